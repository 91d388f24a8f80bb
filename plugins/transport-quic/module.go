// Package quic is Axon's QUIC transport, on github.com/quic-go/quic-go: the
// native protocol over one bidirectional stream per QUIC connection, with
// TLS 1.3 (mandatory in QUIC) from configured files or from a local
// development CA.
package quic

import (
	"fmt"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// Config is the transport's options block (under a listener's options).
type Config struct {
	// CertFile and KeyFile are the PEM certificate chain and key the server
	// presents (and a client offers if a server asks). Set both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile is the PEM bundle a client verifies servers against. Empty
	// means the system roots when CertFile is set, and the development CA
	// otherwise.
	CAFile string `yaml:"ca_file"`
	// StateDir holds the development CA, used when no certificate is
	// configured. Empty means $XDG_STATE_HOME/axon, or ~/.local/state/axon.
	StateDir string `yaml:"state_dir"`
	// IdleTimeout closes a connection with no traffic for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout" min:"1s" max:"24h"`
	// KeepAlive is how often an idle connection is pinged; 0 turns
	// keep-alives off.
	KeepAlive time.Duration `yaml:"keep_alive" min:"0s" max:"1h"`
	// MaxIncomingStreams caps the bidirectional streams a peer may open at
	// once; the native protocol uses one per connection.
	MaxIncomingStreams int `yaml:"max_incoming_streams" min:"1" max:"10000"`
	// Allow0RTT lets clients that resume a session send their first bytes
	// with the handshake. 0-RTT data can be replayed by an attacker.
	Allow0RTT bool `yaml:"allow_0rtt"`
	// HandshakeTimeout bounds the TLS handshake and the wait for a new
	// connection's first stream. Zero means the side's
	// limits.handshake_timeout (default 10s).
	HandshakeTimeout time.Duration `yaml:"handshake_timeout" min:"0s" max:"10m"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{IdleTimeout: 30 * time.Second, KeepAlive: 10 * time.Second, MaxIncomingStreams: 16}
}

// Validate requires cert_file and key_file together.
func (c *Config) Validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		if c.CertFile == "" {
			return config.FieldError("cert_file", "", "a certificate file, since key_file is set")
		}
		return config.FieldError("key_file", "", "a key file, since cert_file is set")
	}
	return nil
}

// Factory builds the transport, named "quic". Its handshake timeout
// defaults to the building side's limits.
var Factory = kernel.NewFactory(kernel.KindTransport, "quic", DefaultConfig,
	func(bc kernel.BuildContext, cfg Config) (kernel.Transport, error) {
		if cfg.HandshakeTimeout == 0 {
			cfg.HandshakeTimeout = bc.Limits.WithDefaults().HandshakeTimeout
		}
		if bc.TLS != nil {
			for key, v := range map[string]string{"cert_file": cfg.CertFile, "key_file": cfg.KeyFile, "ca_file": cfg.CAFile} {
				if v != "" {
					return nil, fmt.Errorf("%s: the tls block (mode %s) secures this transport; its own certificate options are only for tls.mode off", key, bc.TLS.Mode)
				}
			}
		}
		t := New(cfg)
		t.tls = bc.TLS
		return t, nil
	})

// Module contributes the QUIC transport to an Axon application.
var Module = fx.Module("transport.quic", kernel.ProvideFactory(Factory))
