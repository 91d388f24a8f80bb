package e2e_test

import (
	"context"
	"crypto/tls"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/tlstest"
	files "github.com/axonrpc/axon/plugins/credentials-files"
)

// TestRotationUnderLoad: a CA issues 30-second certificates, and the server's
// and the native client's files are rewritten at 70% of each certificate's
// life, three times, while a native client and a grpc-go client (whose own
// certificate rotates too) call without pause, both over mutual TLS, and
// connections are recycled by max_connection_age. No call fails; a new
// handshake presents the new serial once the files changed (the time it
// took is logged).
func TestRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("about 70 seconds")
	}
	const life = 30 * time.Second
	rotateAt := life * 7 / 10
	ca := tlstest.NewCA(t, "rotating CA")
	srvDir, cliDir := t.TempDir(), t.TempDir()
	srvFiles := tlstest.Write(t, srvDir, ca.PEM, ca.Issue(t, "spiffe://test/server", tlstest.Opts{Life: life}))
	cliFiles := tlstest.Write(t, cliDir, ca.PEM, ca.Issue(t, "spiffe://test/client", tlstest.Opts{Life: life}))
	srv := startServer(t, srvConf{Protocols: "[axon, grpc]", TLS: tlsFiles("mutual", srvFiles), Limits: "{max_connection_age: 10s}"})
	addr := srv.addr()

	native, err := kernel.BuildClient(srv.cat, parseConfig(t, "service: cli\nregistry: {use: static}\ntls: "+tlsFiles("mutual", cliFiles)+"\n"), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer native.Close()
	var grpcCert atomic.Pointer[tls.Certificate]
	first := ca.Issue(t, "spiffe://test/grpc-go", tlstest.Opts{Life: life})
	grpcCert.Store(&first.TLS)
	conf := &tls.Config{RootCAs: tlstest.Pool(ca), ServerName: "localhost",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return grpcCert.Load(), nil }}
	cc, err := grpc.NewClient(hostPort(addr), grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var calls, failed atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	run := func(call func(context.Context) error) {
		defer wg.Done()
		for ctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			err := call(cctx)
			ccancel()
			if ctx.Err() != nil {
				return
			}
			calls.Add(1)
			if err != nil {
				failed.Add(1)
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		}
	}
	for range 2 {
		wg.Add(2)
		go run(func(ctx context.Context) error { _, err := say(ctx, native, mEcho, "hi"); return err })
		go run(func(ctx context.Context) error {
			return cc.Invoke(ctx, mEcho, &echopb.SayRequest{Text: "hi"}, new(echopb.SayResponse))
		})
	}

	// presented dials the listener afresh and returns the serial of the
	// certificate it presents.
	presented := func() *big.Int {
		c, err := tls.Dial("tcp", hostPort(addr), &tls.Config{RootCAs: tlstest.Pool(ca), ServerName: "localhost",
			Certificates: []tls.Certificate{*grpcCert.Load()}, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatalf("a fresh handshake failed: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber
	}
	for i := range 3 {
		time.Sleep(rotateAt)
		leaf := ca.Issue(t, "spiffe://test/server", tlstest.Opts{Life: life})
		tlstest.Write(t, cliDir, ca.PEM, ca.Issue(t, "spiffe://test/client", tlstest.Opts{Life: life}))
		next := ca.Issue(t, "spiffe://test/grpc-go", tlstest.Opts{Life: life})
		grpcCert.Store(&next.TLS)
		start := time.Now()
		tlstest.Write(t, srvDir, ca.PEM, leaf)
		for presented().Cmp(leaf.Cert.SerialNumber) != 0 {
			if time.Since(start) > 30*time.Second { // a hang guard
				t.Fatalf("rotation %d: the listener still presents the old certificate", i+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("rotation %d: new handshakes present serial %x %v after the files changed (files poll every %v)",
			i+1, leaf.Cert.SerialNumber, time.Since(start).Round(time.Millisecond), files.PollInterval)
	}
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	t.Logf("%d calls, %d failed, across 3 rotations", calls.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d calls failed; the first: %v", failed.Load(), calls.Load(), firstErr)
	}
	if calls.Load() == 0 {
		t.Error("no call was made")
	}
}
