package impl

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axonrpc/axon/internal/devca"
	files "github.com/axonrpc/axon/plugins/credentials-files"
)

// tlsImpls are the registered TLS impls and the plaintext impls they are
// the TLS twins of; a framework's refused call is UNAVAILABLE, a raw one
// just ends.
var tlsImpls = []struct {
	name, plain string
	status      bool
}{{"axon-tls", "axon", true}, {"grpc-tls", "grpc", true}, {"raw-pingpong-tls", "raw-pingpong", false}}

// refusal dials addr over TLS with conf and reads from the connection: it
// returns the error that ended the handshake or the read (a TLS 1.3 server
// refuses a client's certificate after the client's side of the handshake
// is done, with an alert the client reads). The deadline only keeps a
// broken server from hanging the test.
func refusal(addr string, conf *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

// TestTLSRequiresClientCertificate: axon-tls and grpc-tls serve TLS 1.3
// with the server's certificate and refuse every client that does not
// present a certificate of the bench CA over TLS 1.3: no certificate, a
// certificate of another CA, TLS 1.2, and plaintext (the plaintext twin's
// own client).
func TestTLSRequiresClientCertificate(t *testing.T) {
	f, err := benchTLSFiles()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := f.caPool()
	if err != nil {
		t.Fatal(err)
	}
	client, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	rogueCA, err := devca.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clientID, err := url.Parse(tlsClientID)
	if err != nil {
		t.Fatal(err)
	}
	rogueCert, err := rogueCA.Issue("127.0.0.1", clientID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rogue := *rogueCert

	for _, ti := range tlsImpls {
		t.Run(ti.name, func(t *testing.T) {
			im, ok := Lookup(ti.name)
			if !ok {
				t.Fatalf("%s is not registered", ti.name)
			}
			srv, err := im.Serve("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			addr := srv.Addr()

			t.Run("server certificate", func(t *testing.T) {
				c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{client}})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				cs := c.ConnectionState()
				if cs.Version != tls.VersionTLS13 {
					t.Errorf("TLS version %x, want TLS 1.3", cs.Version)
				}
				if leaf := cs.PeerCertificates[0]; len(leaf.URIs) != 1 || leaf.URIs[0].String() != tlsServerID {
					t.Errorf("server certificate names %v, want %s", leaf.URIs, tlsServerID)
				}
			})

			for _, tc := range []struct {
				name string
				conf *tls.Config
				want string
			}{
				{"no client certificate", &tls.Config{RootCAs: pool}, "certificate required"},
				// Offered although the server's acceptable CAs do not
				// name its issuer (Certificates alone would not be).
				{"certificate of another CA", &tls.Config{RootCAs: pool, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					return &rogue, nil
				}}, "unknown certificate authority"},
				{"TLS 1.2", &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{client}, MaxVersion: tls.VersionTLS12}, "protocol version"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					err := refusal(addr, tc.conf)
					if err == nil || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("got %v, want an error saying %q", err, tc.want)
					}
					t.Logf("refused: %v", err)
				})
			}

			t.Run("plaintext", func(t *testing.T) {
				plain, ok := Lookup(ti.plain)
				if !ok {
					t.Fatalf("%s is not registered", ti.plain)
				}
				cl, err := plain.Dial(addr, 1)
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err = cl.Call(ctx, []byte("plaintext"))
				if err == nil {
					t.Fatal("a plaintext call succeeded")
				}
				if ctx.Err() != nil {
					t.Fatalf("the plaintext call was not refused, it timed out: %v", err)
				}
				if ti.status && !strings.Contains(strings.ToLower(err.Error()), "unavailable") {
					t.Errorf("got %v, want UNAVAILABLE", err)
				}
				t.Logf("refused: %v", err)
			})
		})
	}
}

// TestTLSFilesOnce: processes that need the TLS files at the same time
// agree on one complete set, which Axon's files credentials accept, and
// leave nothing else behind.
func TestTLSFilesOnce(t *testing.T) {
	state := t.TempDir()
	t.Setenv(StateDirEnv, state)
	const n = 8
	got := make([]tlsFiles, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = benchTLSFiles()
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("files %+v and %+v", got[i], got[0])
		}
	}
	f := got[0]
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	again, err := benchTLSFiles()
	if err != nil {
		t.Fatal(err)
	}
	if ca2, err := os.ReadFile(again.CA); err != nil || !bytes.Equal(ca, ca2) {
		t.Fatalf("a later call made another CA (%v)", err)
	}
	entries, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != tlsDirName {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("state directory holds %v, want only %s", names, tlsDirName)
	}
	for _, side := range []struct{ cert, key, id string }{{f.ServerCert, f.ServerKey, tlsServerID}, {f.ClientCert, f.ClientKey, tlsClientID}} {
		m, err := files.Load(files.Config{CAFile: f.CA, CertFile: side.cert, KeyFile: side.key}, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(side.cert), err)
		}
		if leaf := m.Certificate.Leaf; len(leaf.URIs) != 1 || leaf.URIs[0].String() != side.id {
			t.Errorf("%s names %v, want %s", filepath.Base(side.cert), leaf.URIs, side.id)
		}
	}
}
