package grpc_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/kerneltest"
	"github.com/axonrpc/axon/kernel/transporttest"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
	static "github.com/axonrpc/axon/plugins/registry-static"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// certFor returns a self-signed certificate for 127.0.0.1 and a pool that
// trusts it.
func certFor(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	return transporttest.SelfSigned(x509.Certificate{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}

// tlsTransport is a test-only transport, named "tls" in the test's catalog:
// TCP whose listener hands out tls.Server connections (the handshake is
// left to whoever serves them: the kernel's sniffer on a shared listener)
// and whose Dial completes a TLS handshake with client.
type tlsTransport struct {
	*tcp.Transport
	server, client *tls.Config
	alpn           atomic.Value // string: what the last Dial negotiated
}

func (t *tlsTransport) Listen(ctx context.Context, address string) (net.Listener, error) {
	ln, err := t.Transport.Listen(ctx, address)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(ln, t.server), nil
}

func (t *tlsTransport) Dial(ctx context.Context, address string) (net.Conn, error) {
	c, err := t.Transport.Dial(ctx, address)
	if err != nil {
		return nil, err
	}
	cfg := t.client.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(address)
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	t.alpn.Store(tc.ConnectionState().NegotiatedProtocol)
	return tc, nil
}

// httpsClient is an HTTP client over TLS (TLS 1.3, trusting pool) that
// offers the ALPN IDs alpn and speaks HTTP/2 if h2, else HTTP/1.1. got
// receives the ID each new connection negotiated ("" for none).
func httpsClient(pool *x509.CertPool, alpn []string, h2 bool, got *atomic.Value) *http.Client {
	var p http.Protocols
	if h2 {
		p.SetHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	cfg := &tls.Config{RootCAs: pool, NextProtos: alpn, MinVersion: tls.VersionTLS13}
	return &http.Client{Transport: &http.Transport{
		Protocols:       &p,
		TLSClientConfig: cfg,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := tls.Dialer{Config: cfg}
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				got.Store(c.(*tls.Conn).ConnectionState().NegotiatedProtocol)
			}
			return c, err
		},
	}}
}

// grpcTLS is a grpc-go client over TLS (ALPN h2) trusting pool.
func grpcTLS(t testing.TB, addr string, pool *x509.CertPool) *grpc.ClientConn {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// grpcALPN is the ALPN ID a grpc-go call's connection negotiated.
func grpcALPN(p *peer.Peer) string {
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return fmt.Sprintf("not TLS (%T)", p.AuthInfo)
	}
	return info.State.NegotiatedProtocol
}

// tlsService answers Echo with the call's protocol, counts on Count and
// echoes on Chat, full duplex.
func tlsService() *kernel.ServiceDesc {
	return kernel.NewService(svcName,
		kernel.Unary("Echo", func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return wrapperspb.String(kernel.CallFromContext(ctx).Protocol + ":" + in.Value), nil
		}),
		kernel.ServerStreaming("Count", func(in *wrapperspb.Int32Value, s kernel.ServerStreamingServer[wrapperspb.Int32Value]) error {
			for i := range in.Value {
				if err := s.Send(wrapperspb.Int32(i)); err != nil {
					return err
				}
			}
			return nil
		}),
		kernel.BidiStreaming("Chat", func(s kernel.BidiStreamingServer[wrapperspb.StringValue, wrapperspb.StringValue]) error {
			for {
				m, err := s.Recv()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				if err := s.Send(wrapperspb.String("re: " + m.Value)); err != nil {
					return err
				}
			}
		}),
	)
}

// chatRoundTrips sends n messages on a bidi stream, each answered before the
// next is sent (full duplex), then half-closes and expects the end.
func chatRoundTrips(t *testing.T, send func(any) error, recv func(any) error, closeSend func() error, n int) {
	t.Helper()
	for i := range n {
		msg := fmt.Sprint("m", i)
		if err := send(wrapperspb.String(msg)); err != nil {
			t.Fatal(err)
		}
		var m wrapperspb.StringValue
		if err := recv(&m); err != nil {
			t.Fatal(err)
		}
		if m.Value != "re: "+msg {
			t.Fatalf("got %q, want %q", m.Value, "re: "+msg)
		}
	}
	closeSend()
	if err := recv(new(wrapperspb.StringValue)); err != io.EOF {
		t.Fatalf("end: %v, want EOF", err)
	}
}

// TestTLSSharedListenerALPN: one TLS port (TLS 1.3, ALPN axon/1, h2,
// http/1.1) shared by protocols [axon, grpc, grpc-web] through the kernel
// runtime; the handshake's ALPN picks the protocol. grpc-go (h2) makes
// unary, server-streaming and bidi calls; connect-go's gRPC-Web client
// calls over HTTPS with HTTP/1.1 and with HTTP/2; a native Axon client
// dialling TLS with axon/1 calls too; a TLS client without ALPN is told
// apart by its first bytes.
func TestTLSSharedListenerALPN(t *testing.T) {
	cert, pool := certFor(t)
	srvTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{"axon/1", "h2", "http/1.1"}}
	tlsFactory := kernel.NewFactory(kernel.KindTransport, "tls", tcp.DefaultConfig,
		func(_ kernel.BuildContext, c tcp.Config) (kernel.Transport, error) {
			return &tlsTransport{Transport: tcp.New(c), server: srvTLS}, nil
		})
	cat, err := kernel.NewCatalog([]kernel.Factory{tlsFactory, native.Factory, grpcproto.Factory, grpcproto.WebFactory, protocodec.Factory, static.Factory})
	if err != nil {
		t.Fatal(err)
	}
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{tlsService()})
	if err != nil {
		t.Fatal(err)
	}
	// tls.mode is "off": the kernel has no TLS listeners of its own yet;
	// the test transport does the TLS.
	tree, err := config.LoadBytes("test", []byte(`
service: test
tls: {mode: "off"}
registry: {use: static}
listen:
  - transport: tls
    address: "127.0.0.1:0"
    protocols: [axon, grpc, grpc-web]
    protocol_options:
      grpc-web: {cors: {allowed_origins: ["https://page.example"]}}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kernel.ParseConfig(tree)
	if err != nil {
		t.Fatal(err)
	}
	rt := kernel.NewRuntime(cat, table, slog.New(slog.DiscardHandler))
	if err := rt.Apply(ctxT(t), cfg); err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(context.Background())
	endpoint := rt.Endpoints()[0].Address
	scheme, addr := kernel.SplitAddress(endpoint)
	if scheme != "tls" {
		t.Fatalf("endpoint %q", endpoint)
	}

	t.Run("grpc-go h2", func(t *testing.T) {
		cc := grpcTLS(t, addr, pool)
		var out wrapperspb.StringValue
		var p peer.Peer
		if err := cc.Invoke(ctxT(t), mEcho, wrapperspb.String("a"), &out, grpc.Peer(&p)); err != nil || out.Value != "grpc:a" {
			t.Fatalf("unary: %q, %v", out.Value, err)
		}
		if got := grpcALPN(&p); got != "h2" {
			t.Errorf("ALPN %q, want h2", got)
		}
		s, err := cc.NewStream(ctxT(t), &grpc.StreamDesc{ServerStreams: true}, mCount)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMsg(wrapperspb.Int32(3)); err != nil {
			t.Fatal(err)
		}
		s.CloseSend()
		var got []int32
		for {
			var m wrapperspb.Int32Value
			if err := s.RecvMsg(&m); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.Value)
		}
		if fmt.Sprint(got) != "[0 1 2]" {
			t.Errorf("server stream %v", got)
		}
		bs, err := cc.NewStream(ctxT(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, mChat)
		if err != nil {
			t.Fatal(err)
		}
		chatRoundTrips(t, bs.SendMsg, bs.RecvMsg, bs.CloseSend, 3)
	})

	for _, tc := range []struct {
		name string
		alpn []string
		h2   bool
		want string // negotiated ALPN ID
	}{
		{"grpc-web http/1.1", []string{"http/1.1"}, false, "http/1.1"},
		{"grpc-web h2", []string{"h2"}, true, "h2"},
		// No ALPN: the sniffer reads "POST " and hands the connection to
		// grpc-web, which serves it as on a cleartext connection.
		{"grpc-web no alpn", nil, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var negotiated atomic.Value
			hc := httpsClient(pool, tc.alpn, tc.h2, &negotiated)
			defer hc.CloseIdleConnections()
			base := "https://" + addr
			echo := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc, base+mEcho, connect.WithGRPCWeb())
			res, err := echo.CallUnary(ctxT(t), connect.NewRequest(wrapperspb.String("b")))
			if err != nil || res.Msg.Value != "grpc-web:b" {
				t.Fatalf("unary: %v, %v", res, err)
			}
			if got, _ := negotiated.Load().(string); got != tc.want {
				t.Errorf("ALPN %q, want %q", got, tc.want)
			}
			count := connect.NewClient[wrapperspb.Int32Value, wrapperspb.Int32Value](hc, base+mCount, connect.WithGRPCWeb())
			s, err := count.CallServerStream(ctxT(t), connect.NewRequest(wrapperspb.Int32(4)))
			if err != nil {
				t.Fatal(err)
			}
			var got []int32
			for s.Receive() {
				got = append(got, s.Msg().Value)
			}
			if err := s.Err(); err != nil || fmt.Sprint(got) != "[0 1 2 3]" {
				t.Errorf("server stream %v, %v", got, err)
			}
			if tc.want == "" {
				return
			}
			// Served on net/http's TLS path, the request knows it came over
			// TLS: a page of https://addr is same-origin, one of
			// http://addr is cross-origin (and not allowed). grpc-web's
			// CORS holds over HTTP/2 too, although grpc comes first in the
			// listener's protocols.
			for origin, ok := range map[string]bool{"https://" + addr: true, "http://" + addr: false, "https://page.example": true} {
				req := connect.NewRequest(wrapperspb.String("o"))
				req.Header().Set("Origin", origin)
				_, err := echo.CallUnary(ctxT(t), req)
				if ok != (err == nil) {
					t.Errorf("origin %s: %v, want allowed %v", origin, err, ok)
				}
			}
			if tc.h2 {
				chat := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc, base+mChat, connect.WithGRPCWeb())
				bs := chat.CallBidiStream(ctxT(t))
				for i := range 3 {
					if err := bs.Send(wrapperspb.String(fmt.Sprint(i))); err != nil {
						t.Fatal(err)
					}
					m, err := bs.Receive()
					if err != nil || m.Value != fmt.Sprint("re: ", i) {
						t.Fatalf("bidi: %v, %v", m, err)
					}
				}
				bs.CloseRequest()
				if _, err := bs.Receive(); !errors.Is(err, io.EOF) {
					t.Errorf("bidi end: %v", err)
				}
				bs.CloseResponse()
			}
		})
	}

	t.Run("axon/1", func(t *testing.T) {
		dialer := &tlsTransport{Transport: tcp.New(tcp.DefaultConfig()), client: &tls.Config{RootCAs: pool, NextProtos: []string{native.ALPNID}, MinVersion: tls.VersionTLS13}}
		c, err := kernel.NewClient(kernel.ClientOptions{
			Target:     endpoint,
			Transports: map[string]kernel.Transport{"tls": dialer},
			Protocol:   native.New(native.DefaultConfig()),
			Codec:      protocodec.Codec{},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var out wrapperspb.StringValue
		if err := c.Invoke(ctxT(t), mEcho, wrapperspb.String("d"), &out); err != nil || out.Value != "axon:d" {
			t.Fatalf("unary: %q, %v", out.Value, err)
		}
		if got, _ := dialer.alpn.Load().(string); got != native.ALPNID {
			t.Errorf("ALPN %q, want %s", got, native.ALPNID)
		}
		s, err := c.NewStream(ctxT(t), mChat)
		if err != nil {
			t.Fatal(err)
		}
		chatRoundTrips(t, s.SendMsg, s.RecvMsg, s.CloseSend, 3)
	})
}

// TestGRPCOptionsBesideGRPCWeb: on a listener that lists grpc and grpc-web,
// grpc-web serves every connection, so options under grpc are refused with
// an error that names them and says where they belong.
func TestGRPCOptionsBesideGRPCWeb(t *testing.T) {
	cat, err := kernel.NewCatalog([]kernel.Factory{tcp.Factory, native.Factory, grpcproto.Factory, grpcproto.WebFactory, protocodec.Factory, static.Factory})
	if err != nil {
		t.Fatal(err)
	}
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{tlsService()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, protocols, options, wantErr string
	}{
		{"grpc alone", "[grpc]", "{grpc: {cors: {allowed_origins: [\"*\"]}}}", ""},
		{"beside grpc-web", "[axon, grpc, grpc-web]", "{grpc: {idle_timeout: 1m}}", "listen[0].protocol_options.grpc: unused: on a listener that also serves grpc-web"},
		{"grpc-web first", "[grpc-web, grpc]", "{grpc: {idle_timeout: 1m}}", "move them under protocol_options.grpc-web"},
		{"options under grpc-web", "[grpc, grpc-web]", "{grpc-web: {idle_timeout: 1m}}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := kerneltest.Config(t, fmt.Sprintf(`
service: test
tls: {mode: "off"}
registry: {use: static}
listen: [{transport: tcp, address: "127.0.0.1:0", protocols: %s, protocol_options: %s}]
`, tc.protocols, tc.options))
			rt := kernel.NewRuntime(cat, table, slog.New(slog.DiscardHandler))
			err := rt.Apply(ctxT(t), cfg)
			defer rt.Shutdown(context.Background())
			if tc.wantErr == "" && err != nil {
				t.Fatalf("apply: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("apply: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestTLSOwnListener: the protocol alone on a TLS listener is given
// tls.Server connections whose handshake has not happened; net/http does
// it, serving HTTP/2 to ALPN h2 and HTTP/1.1 to http/1.1. ServeConn returns
// when a client closes its connection, when the handler closes one it took
// over, and on Shutdown.
func TestTLSOwnListener(t *testing.T) {
	cert, pool := certFor(t)
	f := newFixture(t, fixtureOpts{limits: kernel.Limits{MaxMessage: 64 << 10}, tls: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"}}})

	cc := grpcTLS(t, f.addr, pool)
	var out wrapperspb.StringValue
	var p peer.Peer
	if err := cc.Invoke(ctxT(t), mEcho, wrapperspb.String("a"), &out, grpc.Peer(&p)); err != nil || out.Value != "a" {
		t.Fatalf("grpc-go: %q, %v", out.Value, err)
	}
	if got := grpcALPN(&p); got != "h2" {
		t.Errorf("grpc-go ALPN %q, want h2", got)
	}
	if c := f.lastCall(t); c.protocol != "grpc" || c.peer == nil {
		t.Errorf("grpc-go call %+v", c)
	}
	bs, err := cc.NewStream(ctxT(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, mChat)
	if err != nil {
		t.Fatal(err)
	}
	chatRoundTrips(t, bs.SendMsg, bs.RecvMsg, bs.CloseSend, 3)
	f.lastCall(t)

	var negotiated atomic.Value
	hc := httpsClient(pool, []string{"http/1.1"}, false, &negotiated)
	echo := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc, "https://"+f.addr+mEcho, connect.WithGRPCWeb())
	if res, err := echo.CallUnary(ctxT(t), connect.NewRequest(wrapperspb.String("b"))); err != nil || res.Msg.Value != "b" {
		t.Fatalf("grpc-web: %v, %v", res, err)
	}
	if got, _ := negotiated.Load().(string); got != "http/1.1" {
		t.Errorf("grpc-web ALPN %q, want http/1.1", got)
	}
	if c := f.lastCall(t); c.protocol != "grpc-web" {
		t.Errorf("grpc-web call %+v", c)
	}
	// net/http's TLS path: a page of https://addr is same-origin.
	req := connect.NewRequest(wrapperspb.String("c"))
	req.Header().Set("Origin", "https://"+f.addr)
	if _, err := echo.CallUnary(ctxT(t), req); err != nil {
		t.Errorf("same-origin https page: %v", err)
	} else {
		f.lastCall(t)
	}
	if n := f.active.Load(); n != 2 {
		t.Errorf("%d connections served, want 2", n)
	}

	// A client closing its connection ends its ServeConn.
	cc.Close()
	waitActive(t, f, 1)

	// The handler takes over (hijacks) an HTTP/1.1 connection to close it
	// when a full-duplex call leaves too much of its body unread; its
	// ServeConn ends too. (The client may see the close before the
	// response: only the server side is checked.)
	var negotiated2 atomic.Value
	hc2 := httpsClient(pool, []string{"http/1.1"}, false, &negotiated2)
	str := func(v string) []byte { return frame(0, marshal(t, wrapperspb.String(v))) }
	body := append(str("a"), str("stop")...)
	for range 6 {
		body = append(body, str(strings.Repeat("p", 60<<10))...)
	}
	req2, err := http.NewRequest("POST", "https://"+f.addr+mChat, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req2.Header.Set("Content-Type", "application/grpc-web")
	if res, err := hc2.Do(req2); err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	f.lastCall(t)
	waitActive(t, f, 1)

	// Shutdown closes the idle HTTP/1.1 connection that is left.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	waitActive(t, f, 0)
	hc.CloseIdleConnections()
}

// waitActive waits until n of f's ServeConn calls are running.
func waitActive(t *testing.T, f *fixture, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); f.active.Load() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d ServeConn calls running, want %d", f.active.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
