// Package tcp is Axon's TCP transport.
package tcp

import (
	"context"
	"fmt"
	"net"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// Config is the transport's options block (under a listener's options).
type Config struct {
	// NoDelay disables Nagle's algorithm; Axon batches writes itself.
	NoDelay bool `yaml:"no_delay"`
	// KeepAlive is the TCP keep-alive period; 0 turns keep-alives off.
	KeepAlive time.Duration `yaml:"keep_alive" min:"0s" max:"2h"`
	// ReadBuffer and WriteBuffer set the socket buffers; 0 keeps the
	// system's default.
	ReadBuffer  config.Size `yaml:"read_buffer" min:"0B" max:"64MiB"`
	WriteBuffer config.Size `yaml:"write_buffer" min:"0B" max:"64MiB"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{NoDelay: true, KeepAlive: 30 * time.Second} }

// Transport listens and dials TCP. It is safe for concurrent use.
type Transport struct{ cfg Config }

// New returns a TCP transport with cfg.
func New(cfg Config) *Transport { return &Transport{cfg: cfg} }

// Listen implements kernel.Transport.
func (t *Transport) Listen(ctx context.Context, address string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: t.keepAlive()}
	ln, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("transport.tcp: %w", err)
	}
	return &listener{Listener: ln, t: t}, nil
}

// Dial implements kernel.Transport.
func (t *Transport) Dial(ctx context.Context, address string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: t.keepAlive()}
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("transport.tcp: %w", err)
	}
	t.tune(c)
	return c, nil
}

func (t *Transport) keepAlive() time.Duration {
	if t.cfg.KeepAlive == 0 {
		return -1
	}
	return t.cfg.KeepAlive
}

func (t *Transport) tune(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	tc.SetNoDelay(t.cfg.NoDelay)
	if t.cfg.ReadBuffer > 0 {
		tc.SetReadBuffer(int(t.cfg.ReadBuffer))
	}
	if t.cfg.WriteBuffer > 0 {
		tc.SetWriteBuffer(int(t.cfg.WriteBuffer))
	}
}

type listener struct {
	net.Listener
	t *Transport
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.t.tune(c)
	}
	return c, err
}

// Factory builds the transport, named "tcp".
var Factory = kernel.NewFactory(kernel.KindTransport, "tcp", DefaultConfig,
	func(_ kernel.BuildContext, cfg Config) (kernel.Transport, error) { return New(cfg), nil })

// Module contributes the TCP transport to an Axon application.
var Module = fx.Module("transport.tcp", kernel.ProvideFactory(Factory))
