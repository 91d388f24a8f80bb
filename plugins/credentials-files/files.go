package files

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel"
)

// PollInterval is how often the files are checked for changes. A variable
// for tests.
var PollInterval = 250 * time.Millisecond

// Creds holds the current set of files and watches them. It is safe for
// concurrent use; Start begins the watch and Close ends it.
type Creds struct {
	cfg Config
	log *slog.Logger
	cur atomic.Pointer[kernel.Material]

	mu      sync.Mutex
	seen    [3]stamp // of the files as last loaded or refused
	warned  string   // serial of the certificate whose expiry was warned of
	stop    chan struct{}
	stopped chan struct{}
}

// stamp identifies a version of a file without reading it.
type stamp struct {
	size  int64
	mtime time.Time
	ok    bool
}

// New loads the files once; an invalid set is an error naming the file
// and the reason.
func New(cfg Config, log *slog.Logger) (*Creds, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Creds{cfg: cfg, log: log}
	c.seen = c.stamps()
	m, err := Load(cfg, time.Now())
	if err != nil {
		return nil, err
	}
	c.cur.Store(m)
	return c, nil
}

// Material implements kernel.Credentials.
func (c *Creds) Material() *kernel.Material { return c.cur.Load() }

// State implements kernel.Publisher.
func (c *Creds) State() any { return kernel.CertState(c.cur.Load(), time.Time{}) }

// Start begins watching the files.
func (c *Creds) Start(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stop == nil {
		c.stop, c.stopped = make(chan struct{}), make(chan struct{})
		go c.watch(c.stop, c.stopped)
	}
	return nil
}

// Close stops the watch.
func (c *Creds) Close() error {
	c.mu.Lock()
	stop, stopped := c.stop, c.stopped
	c.stop = nil
	c.mu.Unlock()
	if stop != nil {
		close(stop)
		<-stopped
	}
	return nil
}

func (c *Creds) watch(stop, stopped chan struct{}) {
	defer close(stopped)
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.check()
		}
	}
}

// check reloads the set once any of its files changed, and warns once of
// a certificate in use that is within the expiry warning of its end.
func (c *Creds) check() {
	c.warnExpiry(time.Now())
	now := c.stamps()
	if now == c.seen {
		return
	}
	c.seen = now
	m, err := Load(c.cfg, time.Now())
	if err != nil {
		// Half-written files (a rotation in progress) are refused too;
		// the next change, once the set is whole, is loaded.
		c.log.Error("credentials files changed but are refused; the previous certificate keeps serving", "err", err)
		return
	}
	c.cur.Store(m)
	if leaf := leafOf(m); leaf != nil {
		c.log.Info("credentials rotated", "identity", kernel.Identity(leaf), "serial", fmt.Sprintf("%x", leaf.SerialNumber),
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	} else {
		c.log.Info("credentials rotated: new CA bundle", "ca_file", c.cfg.CAFile)
	}
}

// warnExpiry logs a warning, once per certificate, when the one in use is
// within the expiry warning (default a third of its life) of its end.
func (c *Creds) warnExpiry(now time.Time) {
	leaf := leafOf(c.cur.Load())
	if leaf == nil {
		return
	}
	margin := c.cfg.ExpiryWarning
	if margin == 0 {
		margin = leaf.NotAfter.Sub(leaf.NotBefore) / 3
	}
	serial := leaf.SerialNumber.String()
	if leaf.NotAfter.Sub(now) > margin || c.warned == serial {
		return
	}
	c.warned = serial
	c.log.Warn("certificate in use expires soon and its files were not rotated", "cert_file", c.cfg.CertFile,
		"identity", kernel.Identity(leaf), "serial", fmt.Sprintf("%x", leaf.SerialNumber),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "expires_in", leaf.NotAfter.Sub(now).Round(time.Second).String())
}

func (c *Creds) stamps() [3]stamp {
	var s [3]stamp
	for i, path := range []string{c.cfg.CAFile, c.cfg.CertFile, c.cfg.KeyFile} {
		if path == "" {
			continue
		}
		if fi, err := os.Stat(path); err == nil {
			s[i] = stamp{size: fi.Size(), mtime: fi.ModTime(), ok: true}
		}
	}
	return s
}

func leafOf(m *kernel.Material) *x509.Certificate {
	if m.Certificate == nil {
		return nil
	}
	return m.Certificate.Leaf
}

// Load reads and checks one set of files at time now: the CA bundle holds
// certificates, the key matches the certificate, the certificate is valid
// now, is not a CA, and, with a CA bundle, chains to it. Errors name the
// file and the reason.
func Load(cfg Config, now time.Time) (*kernel.Material, error) {
	m := &kernel.Material{}
	if cfg.CAFile != "" {
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		m.Roots = x509.NewCertPool()
		n := 0
		for rest := b; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("ca_file %s: certificate %d: %w", cfg.CAFile, n+1, err)
			}
			m.Roots.AddCert(cert)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", cfg.CAFile)
		}
	}
	if cfg.CertFile == "" {
		return m, nil
	}
	kp, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cert_file %s and key_file %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	leaf := kp.Leaf
	switch {
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("cert_file %s: certificate %s is not valid yet", cfg.CertFile, kernel.DescribeCert(leaf))
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("cert_file %s: certificate %s has expired", cfg.CertFile, kernel.DescribeCert(leaf))
	case leaf.IsCA:
		return nil, fmt.Errorf("cert_file %s: certificate %s is a CA certificate; a leaf is needed", cfg.CertFile, kernel.DescribeCert(leaf))
	}
	if m.Roots != nil {
		inter := x509.NewCertPool()
		for _, der := range kp.Certificate[1:] {
			if c, err := x509.ParseCertificate(der); err == nil {
				inter.AddCert(c)
			}
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: m.Roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil {
			var ua x509.UnknownAuthorityError
			if errors.As(err, &ua) {
				return nil, fmt.Errorf("cert_file %s: certificate %s is not signed by a CA of ca_file %s", cfg.CertFile, kernel.DescribeCert(leaf), cfg.CAFile)
			}
			return nil, fmt.Errorf("cert_file %s: certificate %s does not verify against ca_file %s: %w", cfg.CertFile, kernel.DescribeCert(leaf), cfg.CAFile, err)
		}
	}
	m.Certificate = &kp
	return m, nil
}
