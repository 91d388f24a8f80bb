// Package native implements the native Axon protocol: framed, multiplexed
// calls over any stream transport (see wire.go for the format).
package native

import (
	"net"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// Config is the protocol's options block.
type Config struct {
	// WorkerIdle is how long an idle handler goroutine waits for the next
	// call before it exits.
	WorkerIdle time.Duration `yaml:"worker_idle" min:"1ms" max:"1h"`
	// StreamWindow is the flow-control window this side grants each
	// streaming call it receives on: how many bytes of one stream it
	// buffers before the peer must wait for the application to read. A
	// message larger than the window is still accepted, one at a time.
	StreamWindow config.Size `yaml:"stream_window" min:"1KiB" max:"1GiB"`
	// StreamWindowMax is what a stream's window may grow to while its
	// application reads as fast as the peer sends (see flow.go); set it to
	// stream_window, or lower, to keep windows fixed. Default 256 KiB.
	StreamWindowMax config.Size `yaml:"stream_window_max" min:"1KiB" max:"1GiB"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{WorkerIdle: 10 * time.Second, StreamWindow: defaultStreamWindow, StreamWindowMax: defaultMaxStreamWindow}
}

// window returns the stream window, defaulted.
func (c Config) window() int64 {
	if c.StreamWindow <= 0 {
		return defaultStreamWindow
	}
	return int64(c.StreamWindow)
}

// maxWindow returns what a stream window may grow to, defaulted; never
// less than window.
func (c Config) maxWindow() int64 {
	if c.StreamWindowMax <= 0 {
		return max(defaultMaxStreamWindow, c.window())
	}
	return max(int64(c.StreamWindowMax), c.window())
}

// Protocol is the native protocol's instance for one generation.
type Protocol struct{ cfg Config }

// New returns the protocol with cfg.
func New(cfg Config) *Protocol { return &Protocol{cfg: cfg} }

// Name returns the protocol's name, "axon".
func (p *Protocol) Name() string { return "axon" }

// NewServer implements kernel.Protocol.
func (p *Protocol) NewServer(d *kernel.Dispatcher) kernel.ServerConn {
	return newServer(d, p.cfg)
}

// NewSession implements kernel.Protocol. It performs the handshake (bounded
// by the handshake timeout of o.Limits) before it returns.
func (p *Protocol) NewSession(conn net.Conn, o kernel.SessionOptions) (kernel.Session, error) {
	return newSession(conn, o, p.cfg)
}

// Factory builds the protocol, named "axon".
var Factory = kernel.NewFactory(kernel.KindProtocol, "axon", DefaultConfig,
	func(_ kernel.BuildContext, cfg Config) (kernel.Protocol, error) { return New(cfg), nil })

// Module contributes the protocol to an Axon application.
var Module = fx.Module("protocol.axon", kernel.ProvideFactory(Factory))
