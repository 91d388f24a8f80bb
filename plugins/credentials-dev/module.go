// Package devcreds is the "dev" credentials plugin: a local development CA,
// created on first use under a state directory, that issues this process a
// short-lived certificate (server and client) naming it
// spiffe://<trust_domain>/<service>, and renews it before it expires. Every
// process of one user on one machine shares the CA, so they trust each
// other with mutual TLS and no setup. It is for development only: the CA's
// key is a file in the user's home.
package devcreds

import (
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// Config is the plugin's options block (tls.options).
type Config struct {
	// StateDir holds the CA (dev-ca/ca.pem, which other clients may
	// trust, and dev-ca/ca-key.pem). Empty means $XDG_STATE_HOME/axon, or
	// ~/.local/state/axon.
	StateDir string `yaml:"state_dir"`
	// TrustDomain is the trust domain of the identities issued.
	TrustDomain string `yaml:"trust_domain"`
	// Lifetime is how long an issued certificate is valid; it is renewed
	// at two thirds of it.
	Lifetime time.Duration `yaml:"lifetime" min:"10s" max:"8760h"`
	// Hosts are extra DNS names or IP addresses the certificate names,
	// besides localhost, the loopback addresses and the host name.
	Hosts []string `yaml:"hosts"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{TrustDomain: "axon.local", Lifetime: 24 * time.Hour}
}

// Validate checks the trust domain's form.
func (c *Config) Validate() error {
	if !validTrustDomain(c.TrustDomain) {
		return config.FieldError("trust_domain", c.TrustDomain, "a trust domain: lowercase letters, digits, dots, dashes and underscores")
	}
	return nil
}

// Factory builds the plugin, named "dev". The identity's path is the
// configuration's service name.
var Factory = kernel.NewFactory(kernel.KindCredentials, "dev", DefaultConfig,
	func(bc kernel.BuildContext, cfg Config) (kernel.Credentials, error) {
		return New(cfg, bc.Service, bc.Logger)
	})

// Module contributes the dev credentials to an Axon application.
var Module = fx.Module("credentials.dev", kernel.ProvideFactory(Factory))
