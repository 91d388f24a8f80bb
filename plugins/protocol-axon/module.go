// Package native implements the native Axon protocol: framed, multiplexed
// calls over any stream transport (see wire.go for the format).
package native

import (
	"net"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
)

// Config is the protocol's options block.
type Config struct {
	// WorkerIdle is how long an idle handler goroutine waits for the next
	// call before it exits.
	WorkerIdle time.Duration `yaml:"worker_idle" min:"1ms" max:"1h"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{WorkerIdle: 10 * time.Second} }

// Protocol is the native protocol's instance for one generation.
type Protocol struct{ cfg Config }

// New returns the protocol with cfg.
func New(cfg Config) *Protocol { return &Protocol{cfg: cfg} }

// NewServer implements kernel.Protocol.
func (p *Protocol) NewServer(d *kernel.Dispatcher) kernel.ServerConn {
	return newServer(d, p.cfg.WorkerIdle)
}

// NewSession implements kernel.Protocol. It performs the handshake (bounded
// by the handshake timeout of o.Limits) before it returns.
func (p *Protocol) NewSession(conn net.Conn, o kernel.SessionOptions) (kernel.Session, error) {
	return newSession(conn, o)
}

// Factory builds the protocol, named "axon".
var Factory = kernel.NewFactory(kernel.KindProtocol, "axon", DefaultConfig,
	func(_ kernel.BuildContext, cfg Config) (kernel.Protocol, error) { return New(cfg), nil })

// Module contributes the protocol to an Axon application.
var Module = fx.Module("protocol.axon", kernel.ProvideFactory(Factory))
