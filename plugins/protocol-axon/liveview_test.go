package native_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/kernel/transporttest"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
)

// liveTransport dials TCP, over TLS with tls if set, and remembers the
// local address of each connection: the server's view of the remote one.
type liveTransport struct {
	tls   *tls.Config
	mu    sync.Mutex
	addrs []string
}

func (t *liveTransport) Listen(ctx context.Context, address string) (net.Listener, error) {
	return net.Listen("tcp", address)
}

func (t *liveTransport) Dial(ctx context.Context, address string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.addrs = append(t.addrs, c.LocalAddr().String())
	t.mu.Unlock()
	if t.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, t.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func (t *liveTransport) only(tb testing.TB) string {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.addrs) != 1 {
		tb.Fatalf("client dialed %d connections, want 1", len(t.addrs))
	}
	return t.addrs[0]
}

// liveFixture serves Echo, Fail (INVALID_ARGUMENT), Hold (blocks until
// released) and Chat on loopback, over TLS with serverTLS if set.
type liveFixture struct {
	rep     kernel.ConnReporter
	addr    string
	tr      *liveTransport
	client  *kernel.Client
	held    chan struct{}
	release chan struct{}
}

func startLive(t *testing.T, serverTLS, clientTLS *tls.Config) *liveFixture {
	t.Helper()
	f := &liveFixture{tr: &liveTransport{tls: clientTLS}, held: make(chan struct{}, 1), release: make(chan struct{})}
	svc := kernel.NewService("t.L",
		kernel.Unary("Echo", func(_ context.Context, m *msg) (*msg, error) { return m, nil }),
		kernel.Unary("Fail", func(_ context.Context, m *msg) (*msg, error) {
			return nil, status.New(status.InvalidArgument, "bad")
		}),
		kernel.Unary("Hold", func(_ context.Context, m *msg) (*msg, error) {
			f.held <- struct{}{}
			<-f.release
			return m, nil
		}),
		kernel.BidiStreaming("Chat", func(st kernel.BidiStreamingServer[msg, msg]) error {
			for {
				m, err := st.Recv()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				if err := st.Send(m); err != nil {
					return err
				}
			}
		}),
	)
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc})
	if err != nil {
		t.Fatal(err)
	}
	d := kernel.NewDispatcher(table, nil, []kernel.Codec{fpCodec{}}, kernel.DefaultLimits(), slog.New(slog.DiscardHandler))
	srv := native.New(native.DefaultConfig()).NewServer(d)
	rep, ok := srv.(kernel.ConnReporter)
	if !ok {
		t.Fatalf("%T is not a kernel.ConnReporter", srv)
	}
	f.rep = rep
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	var served sync.WaitGroup
	served.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if serverTLS != nil {
				c = tls.Server(c, serverTLS) // the handshake is left to ServeConn's first read
			}
			served.Go(func() { srv.ServeConn(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		srv.Shutdown(ctx)
		served.Wait()
	})
	f.client, err = kernel.NewClient(kernel.ClientOptions{
		Target:     "tcp://" + f.addr,
		Transports: map[string]kernel.Transport{"tcp": f.tr},
		Protocol:   native.New(native.DefaultConfig()),
		Codec:      fpCodec{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.client.Close() })
	return f
}

// waitConns waits until the server lists n connections, and returns them.
func (f *liveFixture) waitConns(t *testing.T, n int) []kernel.ConnView {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		views := f.rep.Conns()
		if len(views) == n {
			return views
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections listed, want %d: %+v", len(views), n, views)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *liveFixture) call(t *testing.T, method string, want status.Code) {
	t.Helper()
	var out msg
	err := f.client.Invoke(ctxFor(t), method, &msg{S: "hi"}, &out)
	if got := status.CodeOf(err); got != want {
		t.Fatalf("%s: %v, want code %v", method, err, want)
	}
}

// check checks the view of the one connection that served calls.
func (f *liveFixture) check(t *testing.T, v kernel.ConnView, finished map[status.Code]uint64) {
	t.Helper()
	if v.Protocol != "axon" {
		t.Errorf("protocol %q, want axon", v.Protocol)
	}
	if remote := f.tr.only(t); v.Local != f.addr || v.Remote != remote {
		t.Errorf("addresses %s <- %s, want %s <- %s", v.Local, v.Remote, f.addr, remote)
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
	if v.BytesIn == 0 || v.BytesOut == 0 {
		t.Errorf("%d bytes in, %d out; want some", v.BytesIn, v.BytesOut)
	}
	if v.OpenedAt.IsZero() || time.Since(v.OpenedAt) > time.Minute || !v.LastActivity.After(v.OpenedAt) {
		t.Errorf("opened at %v, last activity %v", v.OpenedAt, v.LastActivity)
	}
}

// TestLiveView: the server lists each open connection with its addresses,
// calls in flight, calls by status and bytes, and drops it once closed.
func TestLiveView(t *testing.T) {
	f := startLive(t, nil, nil)
	if n := len(f.rep.Conns()); n != 0 {
		t.Fatalf("%d connections before any was made", n)
	}
	f.call(t, "/t.L/Echo", status.OK)
	f.call(t, "/t.L/Fail", status.InvalidArgument)
	f.call(t, "/t.L/Nope", status.Unimplemented)
	st, err := kernel.OpenBidiStream[msg, msg](ctxFor(t), f.client, "/t.L/Chat")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&msg{S: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	st.CloseSend()
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("chat end: %v", err)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		var out msg
		f.client.Invoke(context.Background(), "/t.L/Hold", &msg{S: "h"}, &out)
	}()
	<-f.held
	if v := f.waitConns(t, 1)[0]; v.InFlight != 1 {
		t.Errorf("%d calls in flight while one is held, want 1", v.InFlight)
	}
	close(f.release)
	<-done

	v := f.waitConns(t, 1)[0]
	if v.TLSVersion != "" || v.PeerIdentity != "" {
		t.Errorf("TLS %q, peer %q on a plaintext connection", v.TLSVersion, v.PeerIdentity)
	}
	f.check(t, v, map[status.Code]uint64{status.OK: 3, status.InvalidArgument: 1, status.Unimplemented: 1})

	f.client.Close()
	f.waitConns(t, 0)
}

// TestLiveViewTLS: a TLS connection shows its version and the identity of
// the client's verified certificate (its first URI SAN).
func TestLiveViewTLS(t *testing.T) {
	serverCert, serverPool := selfSigned(t, x509.ExtKeyUsageServerAuth, nil, nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	id, _ := url.Parse("spiffe://axon.test/client")
	clientCert, clientPool := selfSigned(t, x509.ExtKeyUsageClientAuth, []*url.URL{id}, []string{"client.axon.test"}, nil)
	f := startLive(t,
		&tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientPool, MinVersion: tls.VersionTLS13},
		&tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: serverPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
	f.call(t, "/t.L/Echo", status.OK)
	f.call(t, "/t.L/Nope", status.Unimplemented)
	v := f.waitConns(t, 1)[0]
	if v.TLSVersion != "TLS 1.3" || v.PeerIdentity != "spiffe://axon.test/client" {
		t.Errorf("TLS %q, peer %q; want TLS 1.3, spiffe://axon.test/client", v.TLSVersion, v.PeerIdentity)
	}
	f.check(t, v, map[status.Code]uint64{status.OK: 1, status.Unimplemented: 1})
	f.client.Close()
	f.waitConns(t, 0)
}

// selfSigned returns a self-signed certificate for usage with the given
// SANs, and a pool that trusts it.
func selfSigned(t *testing.T, usage x509.ExtKeyUsage, uris []*url.URL, dns []string, ips []net.IP) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	return transporttest.SelfSigned(x509.Certificate{URIs: uris, DNSNames: dns, IPAddresses: ips, ExtKeyUsage: []x509.ExtKeyUsage{usage}})
}
