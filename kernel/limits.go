package kernel

import (
	"time"

	"github.com/axonrpc/axon/kernel/config"
)

// Limits bound what a peer can make this side allocate or hold. Every limit
// has a default (see DefaultLimits); a zero field means the default.
type Limits struct {
	// MaxMessage is the largest message received; a larger one fails its
	// call with RESOURCE_EXHAUSTED before anything is allocated for it.
	MaxMessage config.Size `yaml:"max_message" min:"1KiB" max:"1GiB"`
	// MaxMetadata is the largest encoded metadata block of one call.
	MaxMetadata config.Size `yaml:"max_metadata" min:"256B" max:"1MiB"`
	// MaxConcurrentStreams caps the calls in progress on one connection;
	// more are refused with a retryable UNAVAILABLE.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams" min:"1" max:"100000"`
	// HandshakeTimeout bounds the time a new connection has to complete
	// its opening as a whole: TLS, its preface and its first settings.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout" min:"1ms" max:"10m"`
	// MaxDecodeDepth bounds message nesting in decoders that recurse.
	MaxDecodeDepth int `yaml:"max_decode_depth" min:"1" max:"10000"`

	// WriteTimeout closes a connection whose writes make no progress for
	// this long (a peer that does not read), freeing its buffers.
	WriteTimeout time.Duration `yaml:"write_timeout" min:"1ms" max:"1h"`
	// MaxConnBuffered bounds the output pending on one connection: beyond
	// it, no new call is dispatched on the connection (new calls are
	// refused, retryable) until the peer reads.
	MaxConnBuffered config.Size `yaml:"max_conn_buffered" min:"64KiB" max:"1GiB"`
	// MaxBuffered is the process-wide budget of request and response bytes
	// buffered by all connections (see Budget); beyond it new calls get
	// RESOURCE_EXHAUSTED before their bodies are read. Server side only.
	MaxBuffered config.Size `yaml:"max_buffered" min:"1MiB" max:"1TiB"`
	// RequestTimeout bounds how long the request of a call may take to
	// arrive once the call began: its metadata and, for a unary call, its
	// message. A call still incomplete is reset and its buffers freed.
	RequestTimeout time.Duration `yaml:"request_timeout" min:"1ms" max:"1h"`
	// IdleTimeout tells a connection that has had no call in progress for
	// this long to go away, and closes it; 0 turns it off. Code that builds Limits
	// itself gets 0: WithDefaults leaves it alone.
	IdleTimeout time.Duration `yaml:"idle_timeout" min:"0s" max:"720h"`
	// MaxConnectionAge tells a connection older than this (give or take
	// 10%, so that connections do not all go at once) to go away, and
	// drains it; 0, the default, means no limit.
	MaxConnectionAge time.Duration `yaml:"max_connection_age" min:"0s" max:"8760h"`
	// MaxConnections caps the server connections open at once across all
	// listeners of the process; a connection beyond it is closed at once,
	// before anything is allocated for it. Server side only.
	MaxConnections int `yaml:"max_connections" min:"1" max:"10000000"`
	// MaxConnectionsPerIP caps the server connections open at once from
	// one remote IP address. Server side only.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip" min:"1" max:"10000000"`
	// ReservedFDs is how many file descriptors accepting keeps free for
	// the admin endpoint and for dialing backends: a connection accepted
	// when fewer are left is closed at once. Server side only.
	ReservedFDs int `yaml:"reserved_fds" min:"0" max:"100000"`
	// ControlFrameRate is the budget, per connection and second (with a
	// burst of as many), of frames that do no work: PING, SETTINGS,
	// WINDOW_UPDATE or CANCEL without effect, unknown frame types, and
	// streams reset before their handler ran (rapid reset). A peer over
	// budget is closed, after a go-away where the protocol can send one
	// without racing its own writer (the native protocol; not the gRPC
	// server on net/http).
	ControlFrameRate int `yaml:"control_frame_rate" min:"1" max:"10000000"`
}

// DefaultLimits returns the default limits (the README's Limits table
// lists them with what a peer gets on excess).
func DefaultLimits() Limits {
	return Limits{
		MaxMessage:           4 << 20,
		MaxMetadata:          8 << 10,
		MaxConcurrentStreams: 100,
		HandshakeTimeout:     10 * time.Second,
		MaxDecodeDepth:       100,
		WriteTimeout:         20 * time.Second,
		MaxConnBuffered:      4 << 20,
		MaxBuffered:          512 << 20,
		RequestTimeout:       10 * time.Second,
		IdleTimeout:          5 * time.Minute,
		MaxConnections:       10000,
		MaxConnectionsPerIP:  1000,
		ReservedFDs:          64,
		ControlFrameRate:     1000,
	}
}

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.MaxMessage == 0 {
		l.MaxMessage = d.MaxMessage
	}
	if l.MaxMetadata == 0 {
		l.MaxMetadata = d.MaxMetadata
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = d.MaxConcurrentStreams
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = d.HandshakeTimeout
	}
	if l.MaxDecodeDepth == 0 {
		l.MaxDecodeDepth = d.MaxDecodeDepth
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.MaxConnBuffered == 0 {
		l.MaxConnBuffered = d.MaxConnBuffered
	}
	if l.MaxBuffered == 0 {
		l.MaxBuffered = d.MaxBuffered
	}
	if l.RequestTimeout == 0 {
		l.RequestTimeout = d.RequestTimeout
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = d.MaxConnections
	}
	if l.MaxConnectionsPerIP == 0 {
		l.MaxConnectionsPerIP = d.MaxConnectionsPerIP
	}
	if l.ControlFrameRate == 0 {
		l.ControlFrameRate = d.ControlFrameRate
	}
	return l
}
