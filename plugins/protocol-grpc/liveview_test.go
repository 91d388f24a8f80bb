package grpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/kernel/transporttest"
)

// dialRecorder dials TCP and remembers each connection and its local
// address, which is the server's view of the remote one.
type dialRecorder struct {
	mu    sync.Mutex
	addrs []string
	conns []net.Conn
}

func (d *dialRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		d.mu.Lock()
		d.addrs = append(d.addrs, c.LocalAddr().String())
		d.conns = append(d.conns, c)
		d.mu.Unlock()
	}
	return c, err
}

func (d *dialRecorder) only(t *testing.T) string {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.addrs) != 1 {
		t.Fatalf("client dialed %d connections, want 1", len(d.addrs))
	}
	return d.addrs[0]
}

// closeAll closes the connections dialed.
func (d *dialRecorder) closeAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
}

// waitConns waits until rep lists n connections, and returns them.
func waitConns(t *testing.T, rep kernel.ConnReporter, n int) []kernel.ConnView {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		views := rep.Conns()
		if len(views) == n {
			return views
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections listed, want %d: %+v", len(views), n, views)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkView checks what every view of a connection that served calls must
// show, and its finished calls.
func checkView(t *testing.T, v kernel.ConnView, local, remote string, finished map[status.Code]uint64, bytes bool) {
	t.Helper()
	if v.Local != local || v.Remote != remote {
		t.Errorf("addresses %s <- %s, want %s <- %s", v.Local, v.Remote, local, remote)
	}
	if v.InFlight != 0 {
		t.Errorf("%d calls in flight, want 0", v.InFlight)
	}
	if len(v.Finished) != len(finished) {
		t.Errorf("finished %v, want %v", v.Finished, finished)
	}
	for code, n := range finished {
		if v.Finished[code] != n {
			t.Errorf("finished %v, want %v", v.Finished, finished)
			break
		}
	}
	if bytes && (v.BytesIn == 0 || v.BytesOut == 0) {
		t.Errorf("%d bytes in, %d out; want some", v.BytesIn, v.BytesOut)
	}
	if !bytes && (v.BytesIn != 0 || v.BytesOut != 0) {
		t.Errorf("%d bytes in, %d out on a TLS connection; want 0", v.BytesIn, v.BytesOut)
	}
	if v.OpenedAt.IsZero() || time.Since(v.OpenedAt) > time.Minute || v.LastActivity.Before(v.OpenedAt) {
		t.Errorf("opened at %v, last activity %v", v.OpenedAt, v.LastActivity)
	}
}

// TestLiveView: the server lists each open connection with its protocol,
// addresses, calls by status and bytes, and drops it once closed.
func TestLiveView(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	rep, ok := f.srv.(kernel.ConnReporter)
	if !ok {
		t.Fatalf("%T is not a kernel.ConnReporter", f.srv)
	}
	if n := len(rep.Conns()); n != 0 {
		t.Fatalf("%d connections before any was made", n)
	}

	t.Run("grpc over h2c", func(t *testing.T) {
		var d dialRecorder
		cc, err := grpc.NewClient("passthrough:///"+f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.dial(ctx, "tcp", addr) }))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		var out wrapperspb.StringValue
		for _, c := range []struct {
			method, in string
			code       codes.Code
		}{
			{mEcho, "hi", codes.OK},
			{mEcho, "fail", codes.InvalidArgument},
			{"/" + svcName + "/Nope", "hi", codes.Unimplemented},
			{mEcho, "again", codes.OK},
		} {
			if err := cc.Invoke(ctxT(t), c.method, wrapperspb.String(c.in), &out); grpcstatus.Code(err) != c.code {
				t.Fatalf("%s(%q): %v, want code %v", c.method, c.in, err, c.code)
			}
		}
		// A call in flight shows.
		go cc.Invoke(context.Background(), mEcho, wrapperspb.String("hold"), &wrapperspb.StringValue{})
		f.waitStarted(t)
		if v := waitConns(t, rep, 1)[0]; v.InFlight != 1 {
			t.Errorf("%d calls in flight, want 1", v.InFlight)
		}
		f.release <- struct{}{}

		// The held call's End happens before its status is sent, but
		// nothing here waits for that status: poll.
		var v kernel.ConnView
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			v = waitConns(t, rep, 1)[0]
			if v.InFlight == 0 || time.Now().After(deadline) {
				break
			}
		}
		if v.Protocol != "grpc" || v.TLSVersion != "" || v.PeerIdentity != "" {
			t.Errorf("protocol %q, TLS %q, peer %q; want grpc without TLS", v.Protocol, v.TLSVersion, v.PeerIdentity)
		}
		checkView(t, v, f.addr, d.only(t), map[status.Code]uint64{status.OK: 3, status.InvalidArgument: 1, status.Unimplemented: 1}, true)

		cc.Close()
		waitConns(t, rep, 0)
	})

	for _, hc := range []struct {
		name string
		h2   bool
	}{{"grpc-web over HTTP/1.1", false}, {"grpc-web over h2c", true}} {
		t.Run(hc.name, func(t *testing.T) {
			var d dialRecorder
			var p http.Protocols
			if hc.h2 {
				p.SetUnencryptedHTTP2(true)
			} else {
				p.SetHTTP1(true)
			}
			tr := &http.Transport{Protocols: &p, DialContext: d.dial, MaxConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			echo := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](&http.Client{Transport: tr}, "http://"+f.addr+mEcho, connect.WithGRPCWeb())
			if _, err := echo.CallUnary(ctxT(t), connect.NewRequest(wrapperspb.String("hi"))); err != nil {
				t.Fatal(err)
			}
			if _, err := echo.CallUnary(ctxT(t), connect.NewRequest(wrapperspb.String("fail"))); connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("fail: %v", err)
			}
			v := waitConns(t, rep, 1)[0]
			if v.Protocol != "grpc-web" {
				t.Errorf("protocol %q, want grpc-web", v.Protocol)
			}
			checkView(t, v, f.addr, d.only(t), map[status.Code]uint64{status.OK: 1, status.InvalidArgument: 1}, true)

			d.closeAll() // the client's HTTP/2 connection may not be idle yet
			waitConns(t, rep, 0)
		})
	}
}

// clientCert returns a self-signed client certificate naming
// spiffe://axon.test/client and client.axon.test, and a pool that trusts
// it.
func clientCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	id, err := url.Parse("spiffe://axon.test/client")
	if err != nil {
		t.Fatal(err)
	}
	return transporttest.SelfSigned(x509.Certificate{URIs: []*url.URL{id}, DNSNames: []string{"client.axon.test"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

// TestLiveViewTLS: a connection served over TLS (its handshake done by the
// HTTP server) shows its TLS version and the client certificate's identity,
// and no bytes.
func TestLiveViewTLS(t *testing.T) {
	cert, pool := certFor(t)
	ccert, cpool := clientCert(t)
	f := newFixture(t, fixtureOpts{tls: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2", "http/1.1"}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: cpool}})
	rep := f.srv.(kernel.ConnReporter)

	var d dialRecorder
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{ccert}, MinVersion: tls.VersionTLS13})
	cc, err := grpc.NewClient("passthrough:///"+f.addr, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.dial(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.Invoke(ctxT(t), mEcho, wrapperspb.String("hi"), new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	if err := cc.Invoke(ctxT(t), "/"+svcName+"/Nope", wrapperspb.String("hi"), new(wrapperspb.StringValue)); grpcstatus.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown method: %v", err)
	}
	v := waitConns(t, rep, 1)[0]
	if v.Protocol != "grpc" || v.TLSVersion != "TLS 1.3" || v.PeerIdentity != "spiffe://axon.test/client" {
		t.Errorf("protocol %q, TLS %q, peer %q; want grpc, TLS 1.3, spiffe://axon.test/client", v.Protocol, v.TLSVersion, v.PeerIdentity)
	}
	checkView(t, v, f.addr, d.only(t), map[status.Code]uint64{status.OK: 1, status.Unimplemented: 1}, false)

	cc.Close()
	waitConns(t, rep, 0)
}
