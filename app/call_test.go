package app

import (
	"bytes"
	"context"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// scriptedStream is a kernel.ClientStream that records what it is sent and
// answers with responses, then end (nil: OK).
type scriptedStream struct {
	sent      []string
	closed    bool
	responses []string
	end       error
}

func (s *scriptedStream) Context() context.Context     { return context.Background() }
func (s *scriptedStream) Header() (metadata.MD, error) { return nil, nil }
func (s *scriptedStream) Trailer() metadata.MD         { return nil }
func (s *scriptedStream) CloseSend() error             { s.closed = true; return nil }
func (s *scriptedStream) SendMsg(m any) error {
	s.sent = append(s.sent, m.(*wrapperspb.StringValue).GetValue())
	return nil
}
func (s *scriptedStream) RecvMsg(m any) error {
	if len(s.responses) == 0 {
		if s.end == nil {
			return io.EOF
		}
		return s.end
	}
	m.(*wrapperspb.StringValue).Value, s.responses = s.responses[0], s.responses[1:]
	return nil
}

// streamInvoker opens its one stream, keeping the options it was given.
type streamInvoker struct {
	stream *scriptedStream
	opts   []kernel.CallOption
}

func (inv *streamInvoker) Invoke(context.Context, string, any, any, ...kernel.CallOption) error {
	return status.New(status.Internal, "not a unary call")
}

func (inv *streamInvoker) NewStream(_ context.Context, _ string, opts ...kernel.CallOption) (kernel.ClientStream, error) {
	inv.opts = opts
	return inv.stream, nil
}

// schemaCodec is a kernel.SchemaCodec whose fingerprint names the types.
type schemaCodec struct{ kernel.Codec }

func (schemaCodec) Schema(req, resp any) string {
	return string(proto.MessageName(req.(proto.Message))) + ">" + string(proto.MessageName(resp.(proto.Message)))
}
func (schemaCodec) CompareSchema(any, any, string) error { return nil }

// TestCallServerStream checks how axon call prints a server-streaming call:
// one compact JSON line per response, and the call's status when it fails.
func TestCallServerStream(t *testing.T) {
	svc := kernel.NewService("t.Svc", kernel.ServerStreaming("Watch",
		func(*wrapperspb.StringValue, kernel.ServerStreamingServer[wrapperspb.StringValue]) error { return nil }))
	m := svc.Methods[0]
	for _, tc := range []struct {
		name      string
		responses []string
		end       error
		want      string
		code      status.Code
	}{
		{"responses", []string{"a", "b c"}, nil, "\"a\"\n\"b c\"\n", status.OK},
		{"no responses", nil, nil, "", status.OK},
		{"failure after a response", []string{"a"}, status.New(status.Unavailable, "gone"), "\"a\"\n", status.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := &streamInvoker{stream: &scriptedStream{responses: tc.responses, end: tc.end}}
			var out bytes.Buffer
			err := callServerStream(context.Background(), inv, m, wrapperspb.String("req"), &out)
			if status.CodeOf(err) != tc.code || out.String() != tc.want {
				t.Fatalf("got %q, %v; want %q, %v", out.String(), err, tc.want, tc.code)
			}
			if s := inv.stream; len(s.sent) != 1 || s.sent[0] != "req" || !s.closed {
				t.Fatalf("sent %q, closed %v; want the request, then CloseSend", s.sent, s.closed)
			}
			call := &kernel.ClientCall{Codec: schemaCodec{}}
			for _, o := range inv.opts {
				o(call)
			}
			if want := "google.protobuf.StringValue>google.protobuf.StringValue"; call.Schema != want {
				t.Fatalf("schema sent %q, want %q", call.Schema, want)
			}
		})
	}
}
