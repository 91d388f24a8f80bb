package kernel

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// scriptStream is a ServerStream that delivers a fixed list of requests,
// then io.EOF, and records what the handler sends.
type scriptStream struct {
	reqs []string
	sent []string
}

func (s *scriptStream) Context() context.Context     { return context.Background() }
func (s *scriptStream) SendHeader(metadata.MD) error { return nil }
func (s *scriptStream) SendMsg(m any) error          { s.sent = append(s.sent, *m.(*string)); return nil }
func (s *scriptStream) RecvMsg(m any) error {
	if len(s.reqs) == 0 {
		return io.EOF
	}
	*m.(*string), s.reqs = s.reqs[0], s.reqs[1:]
	return nil
}

// TestHandleStreamCardinality: a unary or server-streaming method served as
// a stream takes exactly one request; none or several is UNIMPLEMENTED and
// the handler does not run.
func TestHandleStreamCardinality(t *testing.T) {
	ran := 0
	svc := NewService("t.S",
		Unary("Echo", func(_ context.Context, req *string) (*string, error) { ran++; return req, nil }),
		ServerStreaming("Twice", func(req *string, s ServerStreamingServer[string]) error {
			ran++
			if err := s.Send(req); err != nil {
				return err
			}
			return s.Send(req)
		}),
	)
	table, err := NewServiceTable([]*ServiceDesc{svc})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(table, nil, nil, Limits{}, slog.New(slog.DiscardHandler))
	tests := []struct {
		method string
		reqs   []string
		code   status.Code
		sent   int
	}{
		{"/t.S/Echo", []string{"a"}, status.OK, 1},
		{"/t.S/Echo", nil, status.Unimplemented, 0},
		{"/t.S/Echo", []string{"a", "b"}, status.Unimplemented, 0},
		{"/t.S/Twice", []string{"a"}, status.OK, 2},
		{"/t.S/Twice", nil, status.Unimplemented, 0},
		{"/t.S/Twice", []string{"a", "b"}, status.Unimplemented, 0},
	}
	for _, tt := range tests {
		ran = 0
		s := &scriptStream{reqs: tt.reqs}
		err := d.HandleStream(d.Route(tt.method), s)
		if status.CodeOf(err) != tt.code || len(s.sent) != tt.sent {
			t.Errorf("%s with %d requests: %v, sent %d; want %v, sent %d", tt.method, len(tt.reqs), err, len(s.sent), tt.code, tt.sent)
		}
		if wantRan := tt.code == status.OK; (ran == 1) != wantRan {
			t.Errorf("%s with %d requests: handler ran %d times", tt.method, len(tt.reqs), ran)
		}
	}
}
