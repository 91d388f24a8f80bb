// Package files is the "files" credentials plugin: a CA bundle, a
// certificate chain and its key, read from PEM files and watched. When the
// files change and together form a valid set, the new set is used from the
// next handshake on; an invalid, mismatched or expired set is refused with
// an error naming the file and the reason, and the old set keeps serving.
package files

import (
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// Config is the plugin's keys, which sit in the tls block itself.
type Config struct {
	// CAFile is the PEM bundle of the CAs whose certificates are trusted.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this side's PEM certificate chain (leaf
	// first) and its private key. Set both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ExpiryWarning is how close to its expiry the certificate in use
	// makes the watch log a warning (once per certificate): the files were
	// not rotated in time. 0 means a third of the certificate's life.
	ExpiryWarning time.Duration `yaml:"expiry_warning" min:"0s" max:"8760h"`
}

// Validate requires cert_file and key_file together, and some file.
func (c *Config) Validate() error {
	switch {
	case c.CertFile == "" && c.KeyFile != "":
		return config.FieldError("cert_file", "", "a PEM certificate file, since key_file is set")
	case c.CertFile != "" && c.KeyFile == "":
		return config.FieldError("key_file", "", "a PEM key file, since cert_file is set")
	case c.CAFile == "" && c.CertFile == "":
		return config.FieldError("ca_file", "", "PEM files: ca_file, cert_file and key_file (or tls.credentials: dev for a local development CA, or tls.mode: off for plaintext)")
	}
	return nil
}

// Factory builds the plugin, named "files".
var Factory = kernel.NewFactory(kernel.KindCredentials, "files", func() Config { return Config{} },
	func(bc kernel.BuildContext, cfg Config) (kernel.Credentials, error) {
		return New(cfg, bc.Logger)
	})

// Module contributes the files credentials to an Axon application.
var Module = fx.Module("credentials.files", kernel.ProvideFactory(Factory))
