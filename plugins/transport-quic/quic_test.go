package quic_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"

	"github.com/axonrpc/axon/kernel/transporttest"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	quic "github.com/axonrpc/axon/plugins/transport-quic"
)

// testConfig is the default config with its state in dir and a short
// handshake timeout, so that silent peers are dropped soon.
func testConfig(dir string) quic.Config {
	cfg := quic.DefaultConfig()
	cfg.StateDir = dir
	cfg.HandshakeTimeout = time.Second
	return cfg
}

func loopback(testing.TB) string { return "127.0.0.1:0" }

func TestConformance(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*quic.Config)
	}{
		{"defaults", func(*quic.Config) {}},
		{"0-RTT allowed", func(c *quic.Config) { c.Allow0RTT = true }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			tc.mod(&cfg)
			if cfg.Allow0RTT && quic.RaceEnabled {
				t.Skip("quic-go/quic-go#4303: quic-go's 0-RTT client path has a known data race; run without -race")
			}
			transporttest.Run(t, transporttest.Harness{
				Transport: quic.New(cfg),
				Address:   loopback,
				Protocol:  native.New(native.DefaultConfig()),
				Codec:     protocodec.Codec{},
			})
		})
	}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// roundTrip listens with srv, dials with cli, and checks that bytes go
// both ways; it returns the dialed connection's TLS state.
func roundTrip(t *testing.T, srv, cli *quic.Transport, listenAddr string) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := srv.Listen(ctx(t), listenAddr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	host, _, _ := net.SplitHostPort(listenAddr)
	if host == "" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	c, err := cli.Dial(ctx(t), net.JoinHostPort(host, port))
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo: %q, %v", b, err)
	}
	cs, ok := c.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		t.Fatalf("%T has no ConnectionState", c)
	}
	return cs.ConnectionState(), nil
}

// TestDevCA: with no certificate configured, the server creates a CA in
// the state directory (0700, files 0600), reuses it on the next run, and a
// client with the same state directory trusts it.
func TestDevCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "axon")
	cfg := testConfig(dir)
	st, err := roundTrip(t, quic.New(cfg), quic.New(cfg), "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != quic.ALPN {
		t.Errorf("TLS version %x, ALPN %q; want TLS 1.3 and %q", st.Version, st.NegotiatedProtocol, quic.ALPN)
	}
	perms := map[string]os.FileMode{
		dir:                                    0o700,
		filepath.Join(dir, "dev-ca"):           0o700,
		filepath.Join(dir, "dev-ca", "ca.pem"): 0o600,
		filepath.Join(dir, "dev-ca", "ca-key.pem"): 0o600,
	}
	for path, want := range perms {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", path, got, want)
		}
	}
	caBefore, err := os.ReadFile(filepath.Join(dir, "dev-ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf := st.PeerCertificates[0]
	if len(leaf.IPAddresses) == 0 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("leaf IP SANs %v, want 127.0.0.1 first", leaf.IPAddresses)
	}

	// A second run (new transports) reuses the CA: an old client config
	// trusts a new server.
	if _, err := roundTrip(t, quic.New(cfg), quic.New(cfg), "127.0.0.1:0"); err != nil {
		t.Fatalf("second run: %v", err)
	}
	caAfter, _ := os.ReadFile(filepath.Join(dir, "dev-ca", "ca.pem"))
	if string(caBefore) != string(caAfter) {
		t.Error("the CA was replaced on the second run")
	}

	// A server listening on all interfaces gets a leaf that loopback
	// clients accept too.
	if _, err := roundTrip(t, quic.New(cfg), quic.New(cfg), "0.0.0.0:0"); err != nil {
		t.Fatalf("unspecified listen address: %v", err)
	}
}

// TestDevCAClientErrors: a client without a CA to trust, or with another
// machine's CA, cannot connect, and says why.
func TestDevCAClientErrors(t *testing.T) {
	srv := quic.New(testConfig(t.TempDir()))
	t.Run("no CA yet", func(t *testing.T) {
		empty := t.TempDir()
		_, err := roundTrip(t, srv, quic.New(testConfig(empty)), "127.0.0.1:0")
		if err == nil || !strings.Contains(err.Error(), "no development CA in "+empty) || !strings.HasPrefix(err.Error(), "transport.quic: dial ") {
			t.Fatalf("dial: %v, want an error naming the state directory", err)
		}
	})
	t.Run("another CA", func(t *testing.T) {
		other := t.TempDir()
		// A server run creates a different CA in other.
		if _, err := roundTrip(t, quic.New(testConfig(other)), quic.New(testConfig(other)), "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		_, err := roundTrip(t, srv, quic.New(testConfig(other)), "127.0.0.1:0")
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("dial: %v, want a certificate verification error", err)
		}
	})
}

// TestDevCAInsecureKey: a CA key that others can read is refused.
func TestDevCAInsecureKey(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	if _, err := roundTrip(t, quic.New(cfg), quic.New(cfg), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "dev-ca", "ca-key.pem")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := quic.New(cfg).Listen(ctx(t), "127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("listen: %v, want an error about the key's mode", err)
	}
}

// TestDefaultStateDir: with no state_dir, the CA goes under
// $XDG_STATE_HOME/axon, or ~/.local/state/axon.
func TestDefaultStateDir(t *testing.T) {
	cases := []struct {
		name string
		env  func(t *testing.T, base string)
		want func(base string) string
	}{
		{"XDG_STATE_HOME", func(t *testing.T, base string) { t.Setenv("XDG_STATE_HOME", base) },
			func(base string) string { return filepath.Join(base, "axon") }},
		{"home", func(t *testing.T, base string) { t.Setenv("XDG_STATE_HOME", ""); t.Setenv("HOME", base) },
			func(base string) string { return filepath.Join(base, ".local", "state", "axon") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			tc.env(t, base)
			cfg := quic.DefaultConfig()
			if _, err := roundTrip(t, quic.New(cfg), quic.New(cfg), "127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(tc.want(base), "dev-ca", "ca.pem")); err != nil {
				t.Fatalf("no CA where expected: %v", err)
			}
		})
	}
}

// writeCA writes a CA and a leaf for 127.0.0.1 that it signed, as PEM
// files in dir, and returns their paths.
func writeCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "PRIVATE KEY", keyDER)
}

// TestFiles: configured cert_file/key_file/ca_file are used, and no state
// directory is created.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCA(t, dir)
	state := filepath.Join(dir, "state")
	srvCfg := testConfig(state)
	srvCfg.CertFile, srvCfg.KeyFile = certFile, keyFile
	cliCfg := testConfig(state)
	cliCfg.CAFile = caFile
	st, err := roundTrip(t, quic.New(srvCfg), quic.New(cliCfg), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cn := st.PeerCertificates[0].Subject.CommonName; cn != "127.0.0.1" {
		t.Errorf("server presented %q, not the configured certificate", cn)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state directory created although certificates are configured: %v", err)
	}
	// A client that trusts only the development CA rejects it.
	if _, err := roundTrip(t, quic.New(srvCfg), quic.New(testConfig(t.TempDir())), "127.0.0.1:0"); err == nil {
		t.Error("a client without ca_file trusted the configured certificate")
	}
	// Broken files fail Listen with the key's name.
	bad := srvCfg
	bad.KeyFile = filepath.Join(dir, "missing.pem")
	if _, err := quic.New(bad).Listen(ctx(t), "127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "cert_file/key_file") {
		t.Errorf("listen with a missing key: %v", err)
	}
}

// TestALPN: a client that does not offer axon/1 is refused in the
// handshake.
func TestALPN(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	srv := quic.New(cfg)
	ln, err := srv.Listen(ctx(t), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A real axon client makes the CA readable to this test.
	if _, err := roundTrip(t, srv, quic.New(cfg), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(filepath.Join(dir, "dev-ca", "ca.pem"))
	pool.AppendCertsFromPEM(pemBytes)
	_, err = dialQUIC(ctx(t), ln.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"h3"}, ServerName: "127.0.0.1"})
	if err == nil || !strings.Contains(err.Error(), "application protocol") {
		t.Fatalf("dial with ALPN h3: %v, want a refusal about the application protocol", err)
	}
}

func TestScheme(t *testing.T) {
	if got := quic.New(quic.DefaultConfig()).Scheme(); got != "quic" {
		t.Errorf("Scheme() = %q, want quic", got)
	}
}

// TestFactory: the options block decodes strictly, and the handshake
// timeout defaults to the side's limits.
func TestFactory(t *testing.T) {
	cases := []struct {
		name    string
		opts    map[string]any
		wantErr string
	}{
		{"defaults", nil, ""},
		{"all keys", map[string]any{"cert_file": "c.pem", "key_file": "k.pem", "ca_file": "ca.pem", "state_dir": "/tmp/x",
			"idle_timeout": "1m", "keep_alive": "0s", "max_incoming_streams": 4, "allow_0rtt": true, "handshake_timeout": "3s"}, ""},
		{"cert without key", map[string]any{"cert_file": "c.pem"}, "listen[0].options.key_file"},
		{"key without cert", map[string]any{"key_file": "k.pem"}, "listen[0].options.cert_file"},
		{"idle timeout too short", map[string]any{"idle_timeout": "10ms"}, "listen[0].options.idle_timeout"},
		{"no streams", map[string]any{"max_incoming_streams": 0}, "listen[0].options.max_incoming_streams"},
		{"unknown key", map[string]any{"alpn": "h3"}, "listen[0].options.alpn"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			transporttest.BuildOptions(t, quic.Factory, tc.opts, tc.wantErr)
		})
	}
}

// TestListenerCloseKeepsConns: closing the listener stops new connections
// but leaves accepted ones working, as for TCP, so that a generation swap
// drains its calls.
func TestListenerCloseKeepsConns(t *testing.T) {
	cfg := testConfig(t.TempDir())
	tr := quic.New(cfg)
	ln, err := tr.Listen(ctx(t), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := tr.Dial(ctx(t), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write([]byte("a"))
	var sc net.Conn
	select {
	case sc = <-accepted:
	case <-time.After(20 * time.Second):
		t.Fatal("no connection accepted")
	}
	defer sc.Close()
	ln.Close()
	b := make([]byte, 1)
	if _, err := io.ReadFull(sc, b); err != nil {
		t.Fatalf("server read after the listener closed: %v", err)
	}
	if _, err := sc.Write([]byte("b")); err != nil {
		t.Fatalf("server write after the listener closed: %v", err)
	}
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'b' {
		t.Fatalf("client read after the listener closed: %q %v", b, err)
	}
	if _, err := tr.Dial(ctx(t), ln.Addr().String()); err == nil {
		t.Error("a new dial succeeded after the listener closed")
	}
}

// dialQUIC dials with quic-go directly, for handshakes the transport would
// not make.
func dialQUIC(ctx context.Context, addr string, conf *tls.Config) (*quicgo.Conn, error) {
	return quicgo.DialAddr(ctx, addr, conf, nil)
}
