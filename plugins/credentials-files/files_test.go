package files_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel/tlstest"
	files "github.com/axonrpc/axon/plugins/credentials-files"
)

// TestLoadRefusesBadSets: every way a set of files can be wrong is an
// error naming the file and the reason.
func TestLoadRefusesBadSets(t *testing.T) {
	ca, other := tlstest.NewCA(t, "ca"), tlstest.NewCA(t, "other")
	good := ca.Issue(t, "spiffe://test/a", tlstest.Opts{})
	for _, tc := range []struct {
		name  string
		ca    []byte
		leaf  *tlstest.Leaf
		key   []byte // replaces the leaf's key when set
		want  []string
		noCAF bool
	}{
		{name: "valid", ca: ca.PEM, leaf: good},
		{name: "key of another certificate", ca: ca.PEM, leaf: good, key: ca.Issue(t, "spiffe://test/b", tlstest.Opts{}).KeyPEM,
			want: []string{"cert_file", "key_file", "does not match"}},
		{name: "expired", ca: ca.PEM, leaf: ca.Issue(t, "spiffe://test/a", tlstest.Opts{NotBefore: time.Now().Add(-2 * time.Hour), Life: -time.Hour}),
			want: []string{"cert_file", "has expired", "spiffe://test/a"}},
		{name: "not valid yet", ca: ca.PEM, leaf: ca.Issue(t, "spiffe://test/a", tlstest.Opts{NotBefore: time.Now().Add(time.Hour)}),
			want: []string{"cert_file", "not valid yet"}},
		{name: "a CA as leaf", ca: ca.PEM, leaf: ca.Issue(t, "spiffe://test/a", tlstest.Opts{IsCA: true}),
			want: []string{"cert_file", "is a CA certificate"}},
		{name: "signed by another CA", ca: ca.PEM, leaf: other.Issue(t, "spiffe://test/a", tlstest.Opts{}),
			want: []string{"cert_file", "not signed by a CA of ca_file"}},
		{name: "CA bundle without certificates", ca: []byte("not pem"), leaf: good,
			want: []string{"ca_file", "no PEM certificate"}},
		{name: "no CA file", ca: ca.PEM, leaf: good, noCAF: true,
			want: []string{"ca_file", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := tlstest.Write(t, dir, tc.ca, tc.leaf)
			if tc.key != nil {
				os.WriteFile(f.Key, tc.key, 0o600)
			}
			if tc.noCAF {
				os.Remove(f.CA)
			}
			m, err := files.Load(files.Config{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}, time.Now())
			if len(tc.want) == 0 {
				if err != nil || m.Certificate == nil || m.Roots == nil {
					t.Fatalf("Load: %v, %+v", err, m)
				}
				return
			}
			if err == nil {
				t.Fatal("Load accepted the set")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestRotation: a new valid set is used once written; an invalid one is
// refused and the previous set stays.
func TestRotation(t *testing.T) {
	old := files.PollInterval
	files.PollInterval = 10 * time.Millisecond
	t.Cleanup(func() { files.PollInterval = old })
	ca := tlstest.NewCA(t, "ca")
	dir := t.TempDir()
	first := ca.Issue(t, "spiffe://test/a", tlstest.Opts{})
	f := tlstest.Write(t, dir, ca.PEM, first)
	c, err := files.New(files.Config{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	serial := func() string { return c.Material().Certificate.Leaf.SerialNumber.String() }
	waitSerial := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); serial() != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) { // a hang guard
				t.Fatalf("serial %s, want %s", serial(), want)
			}
		}
	}
	second := ca.Issue(t, "spiffe://test/a", tlstest.Opts{})
	tlstest.Write(t, dir, ca.PEM, second)
	waitSerial(second.Cert.SerialNumber.String())

	// A key that does not match: refused, the second set stays.
	third := ca.Issue(t, "spiffe://test/a", tlstest.Opts{})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), third.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * files.PollInterval)
	if serial() != second.Cert.SerialNumber.String() {
		t.Fatalf("a mismatched set was taken: serial %s", serial())
	}
	// Its key arrives: the set is whole, and taken.
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), third.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	waitSerial(third.Cert.SerialNumber.String())
}

// syncBuffer is a log destination safe for the watch's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestExpiryWarning: a certificate in use within the expiry warning of its
// end is warned of once, naming the file.
func TestExpiryWarning(t *testing.T) {
	old := files.PollInterval
	files.PollInterval = 10 * time.Millisecond
	t.Cleanup(func() { files.PollInterval = old })
	ca := tlstest.NewCA(t, "ca")
	f := tlstest.Write(t, t.TempDir(), ca.PEM, ca.Issue(t, "spiffe://test/a", tlstest.Opts{Life: time.Minute}))
	var logs syncBuffer
	c, err := files.New(files.Config{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key, ExpiryWarning: time.Hour}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.Start(context.Background())
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "expires soon"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) { // a hang guard
			t.Fatal("no expiry warning")
		}
	}
	time.Sleep(20 * files.PollInterval)
	if n := strings.Count(logs.String(), "expires soon"); n != 1 || !strings.Contains(logs.String(), f.Cert) {
		t.Errorf("%d warnings, want one naming %s:\n%s", n, f.Cert, logs.String())
	}
}
