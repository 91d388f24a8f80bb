package e2e_test

import (
	"crypto/tls"
	"testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/tlstest"
	files "github.com/axonrpc/axon/plugins/credentials-files"
)

// BenchmarkUnaryEchoTLS is BenchmarkUnaryEcho over mutual TLS 1.3: the
// listener's tls block is mutual with files credentials, and the kernel
// client's ClientOptions.TLS is mutual TLS with files credentials from the
// same CA. The connections are dialed (and their handshakes done) before
// the timing, so allocs/op is the cost of a call over an established TLS
// connection, to compare with BenchmarkUnaryEcho's. Axon allocates the
// same per call either way; Go's crypto/tls adds one small allocation per
// TLS record read (the io.Reader it passes to bytes.Buffer.ReadFrom in
// Conn.readFromUntil escapes; golang/go#53142), so serial calls, one
// record read on each side, count two more, and parallel calls, whose
// record reads carry several calls' frames, a fraction of that.
func BenchmarkUnaryEchoTLS(b *testing.B) {
	ca := tlstest.NewCA(b, "bench CA")
	srvFiles := tlstest.Write(b, b.TempDir(), ca.PEM, ca.Issue(b, "spiffe://test/server", tlstest.Opts{}))
	cliFiles := tlstest.Write(b, b.TempDir(), ca.PEM, ca.Issue(b, "spiffe://test/client", tlstest.Opts{}))
	srv := startServer(b, srvConf{TLS: tlsFiles("mutual", srvFiles)})
	benchUnaryEcho(b, func(b *testing.B, conns int) invoker { return newTLSClient(b, srv.addr(), conns, cliFiles) })
}

// newTLSClient is newClient with mutual TLS 1.3 from the files f, closed
// when the benchmark ends.
func newTLSClient(t testing.TB, target string, conns int, f tlstest.Files) *kernel.Client {
	t.Helper()
	creds, err := files.New(files.Config{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newClientTLS(t, target, conns, &kernel.TLS{Mode: kernel.TLSMutual, Creds: creds, MinVersion: tls.VersionTLS13})
}
