package tracing_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/kerneltest"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	"github.com/axonrpc/axon/plugins/colour"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
	static "github.com/axonrpc/axon/plugins/registry-static"
	"github.com/axonrpc/axon/plugins/tracing"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

const (
	svc    = "t.v1.Svc"
	mEcho  = "/" + svc + "/Echo"
	mRelay = "/" + svc + "/Relay"
	mCount = "/" + svc + "/Count"
)

type sv = wrapperspb.StringValue

// fixture is a server with the tracing interceptor (from YAML, on the global
// TracerProvider, which the test points at a recorder) serving axon, grpc
// and grpc-web on one port, and a native client with the tracing
// interceptor.
type fixture struct {
	rec    *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	addr   string
	client *kernel.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{rec: tracetest.NewSpanRecorder()}
	f.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(f.rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(f.tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	var relay *kernel.Client // the handler's client, set below
	desc := kernel.NewService(svc,
		kernel.Unary("Echo", func(_ context.Context, in *sv) (*sv, error) { return in, nil }),
		// Relay calls Echo through the server's own client, with the
		// handler's context: the next hop of the trace.
		kernel.Unary("Relay", func(ctx context.Context, in *sv) (*sv, error) {
			out := new(sv)
			err := relay.Invoke(ctx, mEcho, in, out)
			return out, err
		}),
		// Baggage answers with the baggage the handler's context has.
		kernel.Unary("Baggage", func(ctx context.Context, _ *sv) (*sv, error) {
			return wrapperspb.String(baggage.FromContext(ctx).String()), nil
		}),
		kernel.ServerStreaming("Count", func(in *sv, s kernel.ServerStreamingServer[sv]) error {
			for i := range 3 {
				if err := s.Send(wrapperspb.String(fmt.Sprint(in.Value, i))); err != nil {
					return err
				}
			}
			return nil
		}),
	)
	cat, err := kernel.NewCatalog([]kernel.Factory{tcp.Factory, native.Factory, grpcproto.Factory, grpcproto.WebFactory, protocodec.Factory, static.Factory, tracing.Factory})
	if err != nil {
		t.Fatal(err)
	}
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{desc})
	if err != nil {
		t.Fatal(err)
	}
	rt := kerneltest.Run(t, cat, table, `
service: t
tls: {mode: "off"}
registry: {use: static}
listen: [{transport: tcp, address: "127.0.0.1:0", protocols: [axon, grpc, grpc-web]}]
server: {interceptors: [{use: tracing}]}
`)
	endpoint := rt.Endpoints()[0].Address
	_, f.addr = kernel.SplitAddress(endpoint)
	newClient := func() *kernel.Client {
		c, err := kernel.NewClient(kernel.ClientOptions{
			Target:       endpoint,
			Transports:   map[string]kernel.Transport{"tcp": tcp.New(tcp.DefaultConfig())},
			Protocol:     native.New(native.DefaultConfig()),
			Codec:        protocodec.Codec{},
			Interceptors: []kernel.Interceptor{tracing.New(f.tp).Interceptor()},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	relay = newClient()
	f.client = newClient()
	return f
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// span returns the one ended span named name of kind k.
func (f *fixture) span(t *testing.T, name string, k trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range f.rec.Ended() {
		if s.Name() == name && s.SpanKind() == k {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d ended %s spans named %q, want 1 (all: %v)", len(found), k, name, names(f.rec.Ended()))
	}
	return found[0]
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.SpanKind().String()+" "+s.Name())
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// TestOneTraceAcrossHops: a native call to Relay, whose handler calls Echo,
// is one trace of five spans with their parent links: the caller's root,
// the client span of Relay, Relay's server span, the client span of Echo
// (made with the handler's context) and Echo's server span.
func TestOneTraceAcrossHops(t *testing.T) {
	f := newFixture(t)
	ctx, root := f.tp.Tracer("test").Start(ctxT(t), "root")
	out := new(sv)
	if err := f.client.Invoke(ctx, mRelay, wrapperspb.String("hi"), out); err != nil || out.Value != "hi" {
		t.Fatalf("relay: %q, %v", out.Value, err)
	}
	root.End()

	relayClient := f.span(t, svc+"/Relay", trace.SpanKindClient)
	relayServer := f.span(t, svc+"/Relay", trace.SpanKindServer)
	echoClient := f.span(t, svc+"/Echo", trace.SpanKindClient)
	echoServer := f.span(t, svc+"/Echo", trace.SpanKindServer)
	for _, link := range []struct {
		what          string
		child, parent sdktrace.ReadOnlySpan
		parentCtx     trace.SpanContext
	}{
		{"Relay client under root", relayClient, nil, root.SpanContext()},
		{"Relay server under Relay client", relayServer, relayClient, trace.SpanContext{}},
		{"Echo client under Relay server", echoClient, relayServer, trace.SpanContext{}},
		{"Echo server under Echo client", echoServer, echoClient, trace.SpanContext{}},
	} {
		want := link.parentCtx
		if link.parent != nil {
			want = link.parent.SpanContext()
		}
		if got := link.child.Parent(); got.TraceID() != want.TraceID() || got.SpanID() != want.SpanID() {
			t.Errorf("%s: parent %s/%s, want %s/%s", link.what, got.TraceID(), got.SpanID(), want.TraceID(), want.SpanID())
		}
		if link.child.Parent().IsRemote() != (link.child.SpanKind() == trace.SpanKindServer) {
			t.Errorf("%s: parent remote %v; a server span's parent comes over the wire", link.what, link.child.Parent().IsRemote())
		}
	}
	for k, want := range map[string]string{"rpc.system": "axon", "rpc.service": svc, "rpc.method": "Echo", "rpc.grpc.status_code": "0", "axon.protocol": "axon"} {
		if got := attr(echoServer, k); got != want {
			t.Errorf("server span %s = %q, want %q", k, got, want)
		}
	}
	if attr(echoServer, "network.peer.address") == "" {
		t.Error("server span has no network.peer.address")
	}
}

// TestBaggageCrossesHop: baggage in the caller's context (here the traffic
// colour that colour.With puts there) reaches the handler's context on the
// server, over the native protocol.
func TestBaggageCrossesHop(t *testing.T) {
	f := newFixture(t)
	m, err := baggage.NewMember("tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := baggage.New(m)
	ctx := colour.With(baggage.ContextWithBaggage(ctxT(t), b), "canary")
	out := new(sv)
	if err := f.client.Invoke(ctx, "/"+svc+"/Baggage", wrapperspb.String(""), out); err != nil {
		t.Fatal(err)
	}
	got, err := baggage.Parse(out.Value)
	if err != nil || got.Member("tenant").Value() != "acme" || got.Member(colour.BaggageKey).Value() != "canary" {
		t.Errorf("handler's baggage %q (%v), want tenant=acme and axon-colour=canary", out.Value, err)
	}
}

// TestErrorStatus: a failed call's client span is an error with the code;
// a server span is one only for codes that say the server failed.
func TestErrorStatus(t *testing.T) {
	f := newFixture(t)
	err := f.client.Invoke(ctxT(t), "/"+svc+"/Nope", wrapperspb.String("x"), new(sv))
	if err == nil {
		t.Fatal("a call to an unknown method succeeded")
	}
	c := f.span(t, svc+"/Nope", trace.SpanKindClient)
	if c.Status().Code.String() != "Error" || attr(c, "rpc.grpc.status_code") != "12" {
		t.Errorf("client span status %v, code %s; want Error and 12 (UNIMPLEMENTED)", c.Status(), attr(c, "rpc.grpc.status_code"))
	}
}

// TestGRPCCallerContinues: a gRPC call (grpc-go) and a gRPC-Web call
// (connect-go over HTTP/1.1) that send a W3C traceparent, as any
// OpenTelemetry-instrumented client does, get a server span in that trace,
// under the caller's span.
func TestGRPCCallerContinues(t *testing.T) {
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	traceparent := "00-" + traceID + "-" + spanID + "-01"
	for _, tc := range []struct {
		protocol string
		call     func(t *testing.T, addr string) (string, error)
	}{
		{"grpc", func(t *testing.T, addr string) (string, error) {
			cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			out := new(sv)
			err = cc.Invoke(grpcmd.AppendToOutgoingContext(ctxT(t), "traceparent", traceparent), mEcho, wrapperspb.String("g"), out)
			return out.Value, err
		}},
		{"grpc-web", func(t *testing.T, addr string) (string, error) {
			c := connect.NewClient[sv, sv](http.DefaultClient, "http://"+addr+mEcho, connect.WithGRPCWeb())
			req := connect.NewRequest(wrapperspb.String("g"))
			req.Header().Set("traceparent", traceparent)
			res, err := c.CallUnary(ctxT(t), req)
			if err != nil {
				return "", err
			}
			return res.Msg.Value, nil
		}},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			f := newFixture(t)
			if out, err := tc.call(t, f.addr); err != nil || out != "g" {
				t.Fatalf("call: %q, %v", out, err)
			}
			s := f.span(t, svc+"/Echo", trace.SpanKindServer)
			if s.Parent().TraceID().String() != traceID || s.Parent().SpanID().String() != spanID || !s.Parent().IsRemote() {
				t.Errorf("server span parent %s/%s, want the caller's %s/%s", s.Parent().TraceID(), s.Parent().SpanID(), traceID, spanID)
			}
			if attr(s, "rpc.system") != "grpc" || attr(s, "axon.protocol") != tc.protocol {
				t.Errorf("rpc.system %q, axon.protocol %q; want grpc and %s", attr(s, "rpc.system"), attr(s, "axon.protocol"), tc.protocol)
			}
		})
	}
}

// TestStreamEvents: a server-streaming call's spans record each message and
// the client span ends when the stream does.
func TestStreamEvents(t *testing.T) {
	f := newFixture(t)
	s, err := f.client.NewStream(ctxT(t), mCount, kernel.StreamTypes[sv, sv]())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(wrapperspb.String("n")); err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
	n := 0
	for {
		if err := s.RecvMsg(new(sv)); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("%d messages, want 3", n)
	}
	c := f.span(t, svc+"/Count", trace.SpanKindClient)
	srv := f.span(t, svc+"/Count", trace.SpanKindServer)
	count := func(sp sdktrace.ReadOnlySpan, typ string) int {
		k := 0
		for _, e := range sp.Events() {
			for _, a := range e.Attributes {
				if a == attribute.String("message.type", typ) {
					k++
				}
			}
		}
		return k
	}
	if got := count(c, "RECEIVED"); got != 3 {
		t.Errorf("client span: %d RECEIVED events, want 3", got)
	}
	if got := count(srv, "SENT"); got != 3 {
		t.Errorf("server span: %d SENT events, want 3", got)
	}
	if srv.Parent().SpanID() != c.SpanContext().SpanID() {
		t.Errorf("server span's parent %s, want the client span %s", srv.Parent().SpanID(), c.SpanContext().SpanID())
	}
}
