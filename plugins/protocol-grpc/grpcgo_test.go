package grpc_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // registers "gzip" with grpc-go
	grpcmd "google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
	jsoncodec "github.com/axonrpc/axon/plugins/codec-json"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
)

func statusWithDetail(code status.Code, msg string) *spb.Status {
	d, err := anypb.New(wrapperspb.String(detailMsg))
	if err != nil {
		panic(err)
	}
	return &spb.Status{Code: int32(code), Message: msg, Details: []*anypb.Any{d}}
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// jsonCodec is a grpc-go codec for content subtype "json" (protojson).
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)       { return protojson.Marshal(v.(proto.Message)) }
func (jsonCodec) Unmarshal(b []byte, v any) error     { return protojson.Unmarshal(b, v.(proto.Message)) }
func (jsonCodec) Name() string                        { return "json" }
func (c jsonCodec) String() string                    { return c.Name() }
func (fpClientCodec) Marshal(v any) ([]byte, error)   { return proto.Marshal(v.(proto.Message)) }
func (fpClientCodec) Unmarshal(b []byte, v any) error { return proto.Unmarshal(b, v.(proto.Message)) }
func (fpClientCodec) Name() string                    { return "fp" }

var _ encoding.Codec = jsonCodec{}

// fpCodec is a kernel.SchemaCodec whose fingerprint of every method is
// "v1"; fpClientCodec is its grpc-go counterpart.
type fpCodec struct{ protocodec.Codec }
type fpClientCodec struct{}

func (fpCodec) Name() string                { return "fp" }
func (fpCodec) Schema(req, resp any) string { return "v1" }
func (fpCodec) CompareSchema(req, resp any, peer string) error {
	return status.Errorf(status.FailedPrecondition, "schema v1 differs from the caller's %q", peer)
}

func TestGRPCUnary(t *testing.T) {
	f := newFixture(t, fixtureOpts{codecs: []kernel.Codec{protocodec.Codec{}, jsoncodec.New(kernel.Limits{}), fpCodec{}}})
	cc := dial(t, f.addr)
	long := strings.Repeat("compressible ", 2000)
	for _, tc := range []struct {
		name string
		in   string
		opts []grpc.CallOption
		md   []string
		code codes.Code
	}{
		{name: "proto", in: "hi"},
		{name: "json", in: "hi", opts: []grpc.CallOption{grpc.ForceCodec(jsonCodec{})}},
		{name: "gzip", in: long, opts: []grpc.CallOption{grpc.UseCompressor("gzip")}},
		{name: "large, past the flow control windows", in: strings.Repeat("L", 3<<20)},
		{name: "handler panic", in: "panic", code: codes.Internal},
		{name: "schema codec with fingerprint", in: "hi", opts: []grpc.CallOption{grpc.ForceCodec(fpClientCodec{})}, md: []string{kernel.SchemaKey, "v1"}},
		{name: "schema codec without fingerprint", in: "hi", opts: []grpc.CallOption{grpc.ForceCodec(fpClientCodec{})}, code: codes.FailedPrecondition},
		{name: "schema codec with another fingerprint", in: "hi", opts: []grpc.CallOption{grpc.ForceCodec(fpClientCodec{})}, md: []string{kernel.SchemaKey, "v2"}, code: codes.FailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			if tc.md != nil {
				ctx = grpcmd.AppendToOutgoingContext(ctx, tc.md...)
			}
			before := f.intercepted.Load()
			var out wrapperspb.StringValue
			err := cc.Invoke(ctx, mEcho, wrapperspb.String(tc.in), &out, tc.opts...)
			if grpcstatus.Code(err) != tc.code {
				t.Fatalf("got %v, want code %v", err, tc.code)
			}
			if tc.code != codes.OK && tc.in != "panic" {
				if f.intercepted.Load() != before {
					t.Errorf("interceptor ran for a call refused before its handler")
				}
				return
			}
			if tc.code != codes.OK {
				f.lastCall(t)
				return
			}
			if out.Value != tc.in {
				t.Errorf("got %.20q, want %.20q", out.Value, tc.in)
			}
			c := f.lastCall(t)
			if c.protocol != "grpc" || c.method != mEcho || c.peer == nil {
				t.Errorf("server call: %+v", c)
			}
		})
	}
}

func TestGRPCStreaming(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cc := dial(t, f.addr)
	t.Run("server", func(t *testing.T) {
		s, err := cc.NewStream(ctxT(t), &grpc.StreamDesc{ServerStreams: true}, mCount)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMsg(wrapperspb.Int32(5)); err != nil {
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
		if fmt.Sprint(got) != "[0 1 2 3 4]" {
			t.Errorf("got %v", got)
		}
	})
	t.Run("client", func(t *testing.T) {
		s, err := cc.NewStream(ctxT(t), &grpc.StreamDesc{ClientStreams: true}, mSum)
		if err != nil {
			t.Fatal(err)
		}
		for i := int32(1); i <= 10; i++ {
			if err := s.SendMsg(wrapperspb.Int32(i)); err != nil {
				t.Fatal(err)
			}
		}
		s.CloseSend()
		var m wrapperspb.Int32Value
		if err := s.RecvMsg(&m); err != nil {
			t.Fatal(err)
		}
		if m.Value != 55 {
			t.Errorf("sum %d, want 55", m.Value)
		}
		if err := s.RecvMsg(&m); err != io.EOF {
			t.Errorf("after the response: %v, want EOF", err)
		}
	})
	t.Run("bidi", func(t *testing.T) {
		// Full duplex: each reply arrives before the next request is sent.
		s, err := cc.NewStream(ctxT(t), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, mChat)
		if err != nil {
			t.Fatal(err)
		}
		hdr, err := s.Header()
		if err != nil || hdr.Get("x-chat")[0] != "hello" {
			t.Fatalf("header %v, %v", hdr, err)
		}
		for i := range 5 {
			msg := fmt.Sprint("m", i)
			if err := s.SendMsg(wrapperspb.String(msg)); err != nil {
				t.Fatal(err)
			}
			var m wrapperspb.StringValue
			if err := s.RecvMsg(&m); err != nil {
				t.Fatal(err)
			}
			if m.Value != "re: "+msg {
				t.Fatalf("got %q", m.Value)
			}
		}
		s.CloseSend()
		if err := s.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
			t.Errorf("end: %v, want EOF", err)
		}
	})
}

func TestGRPCMetadata(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cc := dial(t, f.addr)
	bin := string([]byte{0, 1, 0xfe, 0xff})
	ctx := grpcmd.AppendToOutgoingContext(ctxT(t), "x-echo", "a", "x-echo", "b", "x-echo-bin", bin)
	var header, trailer grpcmd.MD
	var out wrapperspb.StringValue
	if err := cc.Invoke(ctx, mEcho, wrapperspb.String("hi"), &out, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		md   grpcmd.MD
		key  string
		want string
	}{
		{header, "x-echo", "[a b]"},
		{header, "x-echo-bin", fmt.Sprint([]string{bin})},
		{trailer, "x-trailer", "[t1 t2]"},
		{trailer, "x-trailer-bin", fmt.Sprint([]string{bin})},
	} {
		if got := fmt.Sprint(tc.md.Get(tc.key)); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestGRPCStatus(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cc := dial(t, f.addr)
	for _, tc := range []struct {
		in      string
		details bool
	}{{"fail", false}, {"fail-details", true}} {
		t.Run(tc.in, func(t *testing.T) {
			var trailer grpcmd.MD
			err := cc.Invoke(ctxT(t), mEcho, wrapperspb.String(tc.in), new(wrapperspb.StringValue), grpc.Trailer(&trailer))
			st := grpcstatus.Convert(err)
			if st.Code() != codes.InvalidArgument || st.Message() != failMsg {
				t.Fatalf("got %v %q", st.Code(), st.Message())
			}
			// grpc-go decodes grpc-status-details-bin and would report a code
			// that differs from grpc-status as INTERNAL.
			p := st.Proto()
			if p.Code != int32(codes.InvalidArgument) || p.Message != failMsg {
				t.Errorf("details status %v", p)
			}
			if tc.details {
				if len(st.Details()) != 1 || st.Details()[0].(*wrapperspb.StringValue).GetValue() != detailMsg {
					t.Errorf("details %v", st.Details())
				}
			} else if len(p.Details) != 0 {
				t.Errorf("unexpected details %v", p.Details)
			}
			if got := fmt.Sprint(trailer.Get("x-trailer")); got != "[t1 t2]" {
				t.Errorf("trailer metadata of a failed call: %s", got)
			}
		})
	}
}

func TestGRPCDeadline(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cc := dial(t, f.addr)
	ctx, cancel := context.WithTimeout(ctxT(t), 100*time.Millisecond)
	defer cancel()
	err := cc.Invoke(ctx, mEcho, wrapperspb.String("wait"), new(wrapperspb.StringValue))
	if grpcstatus.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v", err)
	}
	if c := f.lastCall(t); !c.deadline {
		t.Error("the handler's context had no deadline")
	}
	// The server's own deadline ended the handler (or the client's
	// RST_STREAM did, if it came first): either way it ended.
	if err := f.waitEnded(t); err == nil {
		t.Error("handler context not done")
	}
}

func TestGRPCCancel(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cc := dial(t, f.addr)
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"unary", func(ctx context.Context) error {
			return cc.Invoke(ctx, mEcho, wrapperspb.String("wait"), new(wrapperspb.StringValue))
		}},
		{"server stream", func(ctx context.Context) error {
			s, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, mCount)
			if err != nil {
				return err
			}
			s.SendMsg(wrapperspb.Int32(-1))
			s.CloseSend()
			return s.RecvMsg(new(wrapperspb.Int32Value))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(ctxT(t))
			errc := make(chan error, 1)
			go func() { errc <- tc.call(ctx) }()
			f.waitStarted(t)
			cancel()
			if err := <-errc; grpcstatus.Code(err) != codes.Canceled {
				t.Errorf("client: %v", err)
			}
			if err := f.waitEnded(t); err != context.Canceled {
				t.Errorf("handler context: %v, want context.Canceled", err)
			}
		})
	}
}

func TestGRPCUnknownMethod(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	cc := dial(t, f.addr)
	for _, method := range []string{"/" + svcName + "/Nope", "/axon.test.v1.Nope/Echo"} {
		t.Run(method, func(t *testing.T) {
			err := cc.Invoke(ctxT(t), method, wrapperspb.String("hi"), new(wrapperspb.StringValue))
			if grpcstatus.Code(err) != codes.Unimplemented {
				t.Fatalf("got %v", err)
			}
			if n := f.intercepted.Load(); n != 0 {
				t.Errorf("interceptors ran %d times", n)
			}
		})
	}
}
