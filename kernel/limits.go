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
	// HandshakeTimeout bounds the time a new connection has to send its
	// preface.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout" min:"1ms" max:"10m"`
	// MaxDecodeDepth bounds message nesting in decoders that recurse.
	MaxDecodeDepth int `yaml:"max_decode_depth" min:"1" max:"10000"`
}

// DefaultLimits returns the default limits: 4 MiB messages, 8 KiB of
// metadata, 100 concurrent streams per connection, a 10 s handshake and a
// decode depth of 100.
func DefaultLimits() Limits {
	return Limits{
		MaxMessage:           4 << 20,
		MaxMetadata:          8 << 10,
		MaxConcurrentStreams: 100,
		HandshakeTimeout:     10 * time.Second,
		MaxDecodeDepth:       100,
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
	return l
}
