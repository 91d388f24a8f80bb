package devcreds

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
)

// TestIssueAndRenew: the certificate names spiffe://<trust_domain>/<service>,
// chains to the CA in the state directory, serves and clients alike, and a
// renewal replaces it with a new serial; a second instance shares the CA.
func TestIssueAndRenew(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{StateDir: dir, TrustDomain: "example.test", Lifetime: time.Hour}
	c, err := New(cfg, "billing", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := c.Material()
	leaf := m.Certificate.Leaf
	if id := kernel.Identity(leaf); id != "spiffe://example.test/billing" {
		t.Errorf("identity %q", id)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the certificate does not verify for servers and clients: %v", err)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > time.Hour+2*time.Minute {
		t.Errorf("lives %v, want about an hour", life)
	}
	if err := c.renew(); err != nil {
		t.Fatal(err)
	}
	if c.Material().Certificate.Leaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("renewal kept the serial")
	}
	st := c.State().(map[string]any)
	if st["identity"] != "spiffe://example.test/billing" || st["next_rotation"] == nil {
		t.Errorf("state %v", st)
	}

	other, err := New(cfg, "web", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Material().Certificate.Leaf.Verify(x509.VerifyOptions{Roots: m.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("a second instance's certificate is not trusted by the first: %v", err)
	}
}

// TestWriteFiles: axon dev-cert's files load as a key pair that chains to
// the CA file.
func TestWriteFiles(t *testing.T) {
	cfg := Config{StateDir: t.TempDir(), TrustDomain: "axon.local", Lifetime: time.Hour}
	ca, cert, key, err := WriteFiles(cfg, "grpcurl", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := loadPool(ca)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kp.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Error(err)
	}
	if id := kernel.Identity(kp.Leaf); id != "spiffe://axon.local/grpcurl" {
		t.Errorf("identity %q", id)
	}
	if _, _, _, err := WriteFiles(Config{StateDir: t.TempDir(), TrustDomain: "Bad Domain", Lifetime: time.Hour}, "x", t.TempDir()); err == nil || !strings.Contains(err.Error(), "trust domain") {
		t.Errorf("a bad trust domain: %v", err)
	}
}

// loadPool reads a PEM bundle into a pool.
func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b)
	return p, nil
}
