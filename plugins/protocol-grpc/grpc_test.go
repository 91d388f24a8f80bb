package grpc_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
)

const (
	svcName   = "axon.test.v1.Test"
	mEcho     = "/" + svcName + "/Echo"
	mCount    = "/" + svcName + "/Count"
	mSum      = "/" + svcName + "/Sum"
	mChat     = "/" + svcName + "/Chat"
	failMsg   = "bad request: 100% wrong, naïve"
	detailMsg = "a detail"
)

// fixture is a test service served by the protocol on 127.0.0.1.
type fixture struct {
	addr   string
	d      *kernel.Dispatcher
	srv    kernel.ServerConn
	ln     net.Listener
	served sync.WaitGroup
	active atomic.Int64 // ServeConn calls that have not returned

	intercepted atomic.Int64    // calls that reached the interceptor chain
	started     chan struct{}   // a blocking handler has started
	release     chan struct{}   // unblocks "hold"
	ended       chan error      // a blocking handler's context error
	calls       chan callRecord // what handlers saw
}

type callRecord struct {
	protocol, method string
	peer             net.Addr
	deadline         bool
}

// fixtureOpts tune newFixture.
type fixtureOpts struct {
	limits kernel.Limits
	cfg    *grpcproto.Config
	codecs []kernel.Codec
	tls    *tls.Config // if set, accepted connections are tls.Server(c, tls), handshake left to ServeConn
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	f := &fixture{
		started: make(chan struct{}, 16), release: make(chan struct{}),
		ended: make(chan error, 16), calls: make(chan callRecord, 64),
	}
	svc := kernel.NewService(svcName,
		kernel.Unary("Echo", f.echo),
		kernel.ServerStreaming("Count", f.count),
		kernel.ClientStreaming("Sum", f.sum),
		kernel.BidiStreaming("Chat", f.chat),
	)
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc})
	if err != nil {
		t.Fatal(err)
	}
	ic := kernel.Interceptor{
		Server: func(ctx context.Context, req any, next kernel.UnaryHandler) (any, error) {
			f.intercepted.Add(1)
			return next(ctx, req)
		},
		StreamServer: func(s kernel.ServerStream, next kernel.StreamHandler) error {
			f.intercepted.Add(1)
			return next(s)
		},
	}
	codecs := o.codecs
	if codecs == nil {
		codecs = []kernel.Codec{protocodec.Codec{}}
	}
	d := kernel.NewDispatcher(table, []kernel.Interceptor{ic}, codecs, o.limits, slog.New(slog.DiscardHandler))
	f.d = d
	cfg := grpcproto.DefaultConfig()
	if o.cfg != nil {
		cfg = *o.cfg
	}
	f.srv = grpcproto.New("grpc-web", cfg).NewServer(d)
	f.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = f.ln.Addr().String()
	if o.tls != nil {
		f.ln = tls.NewListener(f.ln, o.tls)
	}
	f.served.Add(1)
	go func() {
		defer f.served.Done()
		for {
			c, err := f.ln.Accept()
			if err != nil {
				return
			}
			f.served.Add(1)
			go func() {
				defer f.served.Done()
				f.active.Add(1)
				defer f.active.Add(-1)
				f.srv.ServeConn(c)
			}()
		}
	}()
	t.Cleanup(func() { f.close(t) })
	return f
}

// close shuts the server down and waits until every ServeConn returned.
func (f *fixture) close(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	f.ln.Close()
	f.served.Wait()
}

func (f *fixture) record(ctx context.Context) {
	c := kernel.CallFromContext(ctx)
	_, hasDeadline := ctx.Deadline()
	select {
	case f.calls <- callRecord{protocol: c.Protocol, method: c.Method.FullName, peer: c.Peer, deadline: hasDeadline}:
	default:
	}
}

func (f *fixture) echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	f.record(ctx)
	md := metadata.FromIncomingContext(ctx)
	if v := md["x-echo"]; len(v) > 0 {
		kernel.SetHeader(ctx, metadata.MD{"x-echo": v})
	}
	if v := md["x-echo-bin"]; len(v) > 0 {
		kernel.SetHeader(ctx, metadata.MD{"x-echo-bin": v})
		kernel.SetTrailer(ctx, metadata.MD{"x-trailer-bin": v})
	}
	kernel.SetTrailer(ctx, metadata.MD{"x-trailer": {"t1", "t2"}})
	switch in.Value {
	case "fail":
		return nil, status.New(status.InvalidArgument, failMsg)
	case "fail-details":
		kernel.SetTrailer(ctx, metadata.MD{"grpc-status-details-bin": {string(detailsFor(status.InvalidArgument, failMsg))}})
		return nil, status.New(status.InvalidArgument, failMsg)
	case "wait":
		f.started <- struct{}{}
		<-ctx.Done()
		f.ended <- ctx.Err()
		return nil, ctx.Err()
	case "panic":
		panic("handler bug")
	case "hold":
		f.started <- struct{}{}
		<-f.release
	}
	return in, nil
}

func (f *fixture) count(in *wrapperspb.Int32Value, s kernel.ServerStreamingServer[wrapperspb.Int32Value]) error {
	f.record(s.Context())
	if in.Value < 0 {
		f.started <- struct{}{}
		<-s.Context().Done()
		f.ended <- s.Context().Err()
		return s.Context().Err()
	}
	for i := range in.Value {
		if err := s.Send(wrapperspb.Int32(i)); err != nil {
			return err
		}
	}
	return nil
}

func (f *fixture) sum(s kernel.ClientStreamingServer[wrapperspb.Int32Value, wrapperspb.Int32Value]) error {
	f.record(s.Context())
	var total int32
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return s.SendAndClose(wrapperspb.Int32(total))
		}
		if err != nil {
			return err
		}
		if m.Value < 0 {
			// Fails before reading the rest of the request.
			return status.New(status.InvalidArgument, "negative")
		}
		total += m.Value
	}
}

func (f *fixture) chat(s kernel.BidiStreamingServer[wrapperspb.StringValue, wrapperspb.StringValue]) error {
	f.record(s.Context())
	if err := s.SendHeader(metadata.New("x-chat", "hello")); err != nil {
		return err
	}
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if m.Value == "stop" {
			// Fails after answering, before reading the rest.
			return status.New(status.InvalidArgument, "stopped")
		}
		if err := s.Send(wrapperspb.String("re: " + m.Value)); err != nil {
			return err
		}
	}
}

// detailsFor is a google.rpc.Status with one detail, as a handler that sends
// details marshals it.
func detailsFor(code status.Code, msg string) []byte {
	b, err := proto.Marshal(statusWithDetail(code, msg))
	if err != nil {
		panic(err)
	}
	return b
}

// waitStarted waits for a blocking handler to start.
func (f *fixture) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-f.started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not start")
	}
}

// waitEnded waits for a blocking handler to see its context end.
func (f *fixture) waitEnded(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f.ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("handler context was not cancelled")
		return nil
	}
}

func (f *fixture) lastCall(t *testing.T) callRecord {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no call recorded")
		return callRecord{}
	}
}

// h2cClient is an HTTP client speaking cleartext HTTP/2 with prior
// knowledge; h1Client speaks HTTP/1.1.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

func h1Client() *http.Client {
	var p http.Protocols
	p.SetHTTP1(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}
