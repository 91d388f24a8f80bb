package devcreds

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/internal/devca"
	"github.com/axonrpc/axon/kernel"
)

// Creds issues and renews this process's development certificate. It is
// safe for concurrent use; Close stops the renewal.
type Creds struct {
	ca    *devca.CA
	id    *url.URL
	life  time.Duration
	hosts []string
	log   *slog.Logger
	roots *x509.CertPool

	cur atomic.Pointer[kernel.Material]

	mu    sync.Mutex
	timer *time.Timer
	next  time.Time // when the certificate is renewed
	done  bool
}

// New loads or creates the development CA under cfg.StateDir and issues
// the first certificate, for service.
func New(cfg Config, service string, log *slog.Logger) (*Creds, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := devca.StateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	ca, err := devca.LoadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	path := service
	if path == "" {
		path = "unnamed"
	}
	c := &Creds{ca: ca, id: &url.URL{Scheme: "spiffe", Host: cfg.TrustDomain, Path: "/" + path},
		life: cfg.Lifetime, hosts: cfg.Hosts, log: log, roots: x509.NewCertPool()}
	c.roots.AddCert(ca.Cert())
	if err := c.renew(); err != nil {
		return nil, err
	}
	return c, nil
}

// Material implements kernel.Credentials.
func (c *Creds) Material() *kernel.Material { return c.cur.Load() }

// renew issues a new certificate, makes it current and schedules the next
// renewal at two thirds of its life.
func (c *Creds) renew() error {
	cert, err := c.ca.Issue("", c.id, c.life, c.hosts...)
	if err != nil {
		return fmt.Errorf("issue a development certificate for %s: %w", c.id, err)
	}
	c.cur.Store(&kernel.Material{Certificate: cert, Roots: c.roots})
	life := cert.Leaf.NotAfter.Sub(time.Now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	c.next = time.Now().Add(life * 2 / 3)
	c.log.Info("development certificate issued", "identity", c.id.String(), "serial", fmt.Sprintf("%x", cert.Leaf.SerialNumber),
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "next_rotation", c.next.UTC().Format(time.RFC3339))
	if c.timer == nil {
		c.timer = time.AfterFunc(life*2/3, c.tick)
	} else {
		c.timer.Reset(life * 2 / 3)
	}
	return nil
}

func (c *Creds) tick() {
	if err := c.renew(); err != nil {
		// The current certificate stays until it expires; try again soon.
		c.log.Error("renewing the development certificate failed", "identity", c.id.String(), "err", err)
		c.mu.Lock()
		if !c.done {
			c.timer.Reset(time.Minute)
		}
		c.mu.Unlock()
	}
}

// State implements kernel.Publisher: the certificate's identity, serial,
// expiry and next rotation.
func (c *Creds) State() any {
	m := c.cur.Load()
	c.mu.Lock()
	next := c.next
	c.mu.Unlock()
	return kernel.CertState(m, next)
}

// Close stops the renewal.
func (c *Creds) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	if c.timer != nil {
		c.timer.Stop()
	}
	return nil
}

// validTrustDomain reports whether td is a SPIFFE trust domain name.
func validTrustDomain(td string) bool {
	if td == "" {
		return false
	}
	return strings.Trim(td, "abcdefghijklmnopqrstuvwxyz0123456789.-_") == ""
}

// WriteFiles issues a certificate for spiffe://<trust_domain>/<name> from
// the development CA of cfg (created if there is none) and writes it, its
// key and the CA's certificate into dir as cert.pem, key.pem and ca.pem
// (mode 0600), for tools that read files: grpcurl -cacert -cert -key, a
// browser, a files credentials block. It returns the three paths.
func WriteFiles(cfg Config, name, dir string) (caFile, certFile, keyFile string, err error) {
	if !validTrustDomain(cfg.TrustDomain) {
		return "", "", "", fmt.Errorf("trust domain %q: lowercase letters, digits, dots, dashes and underscores expected", cfg.TrustDomain)
	}
	state, err := devca.StateDir(cfg.StateDir)
	if err != nil {
		return "", "", "", err
	}
	ca, err := devca.LoadOrCreateCA(state)
	if err != nil {
		return "", "", "", err
	}
	cert, err := ca.Issue("", &url.URL{Scheme: "spiffe", Host: cfg.TrustDomain, Path: "/" + name}, cfg.Lifetime, cfg.Hosts...)
	if err != nil {
		return "", "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", err
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, block := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: ca.Cert().Raw},
		certFile: {Type: "CERTIFICATE", Bytes: cert.Certificate[0]},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return "", "", "", err
		}
	}
	return caFile, certFile, keyFile, nil
}
