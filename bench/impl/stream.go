package impl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The streaming methods every Streamer's server serves beside the unary
// Call, all with wrapperspb.BytesValue messages:
//
//   - bench.Echo/Stream, bidirectional: the server sends each request
//     message back as it arrives and ends with OK when the client
//     half-closes.
//   - bench.Echo/Download, server streaming: the one request's value is an
//     8-byte big-endian count followed by a payload; the server sends the
//     payload back count times (count 0: until the call is cancelled), then
//     ends with OK.
const (
	streamEchoMethod = "/bench.Echo/Stream"
	downloadMethod   = "/bench.Echo/Download"
)

// Streamer is an Impl whose server also serves the streaming methods above.
// The Axon impls (native over every transport), axon-grpc and grpc are
// Streamers.
type Streamer interface {
	Impl
	// DialStream connects a client for streaming calls to the server at
	// addr, as Dial does for unary calls (the same connection setup).
	DialStream(addr string) (StreamClient, error)
}

// StreamClient opens streaming calls on one connection set.
type StreamClient interface {
	// Bidi opens one bench.Echo/Stream call. Cancelling ctx ends it.
	Bidi(ctx context.Context) (Stream, error)
	// Download opens one bench.Echo/Download call asking for count copies
	// of payload (0: until ctx is cancelled), and half-closes it. Only
	// Recv is used on the stream it returns.
	Download(ctx context.Context, payload []byte, count uint64) (Stream, error)
	// Close releases the client's connections; streams in flight fail.
	Close() error
}

// Stream is one streaming call. One goroutine may Send (and then
// CloseSend) while another receives.
type Stream interface {
	// Send sends payload as one message, blocking while flow control
	// allows no more. payload is only read, and not retained after Send
	// returns.
	Send(payload []byte) error
	// CloseSend half-closes the call.
	CloseSend() error
	// Recv returns the value of the next message, valid until the next
	// Recv; io.EOF once the call ended with OK, or the error that ended
	// it.
	Recv() ([]byte, error)
}

// Streamers returns every registered Streamer in report order.
func Streamers() []Streamer {
	var out []Streamer
	for _, im := range registry {
		if s, ok := im.(Streamer); ok {
			out = append(out, s)
		}
	}
	return out
}

// msgStream is what both kernel.ClientStream and grpc.ClientStream offer.
type msgStream interface {
	SendMsg(m any) error
	RecvMsg(m any) error
	CloseSend() error
}

// pbStream adapts a msgStream to Stream with BytesValue messages. The
// sending and the receiving goroutine each own one of the two messages,
// which are reused from message to message (both stacks allow it).
type pbStream struct {
	s   msgStream
	out wrapperspb.BytesValue // owned by the sender
	in  wrapperspb.BytesValue // owned by the receiver
}

func (p *pbStream) Send(payload []byte) error {
	p.out.Value = payload
	return p.s.SendMsg(&p.out)
}

func (p *pbStream) CloseSend() error { return p.s.CloseSend() }

func (p *pbStream) Recv() ([]byte, error) {
	if err := p.s.RecvMsg(&p.in); err != nil {
		return nil, err
	}
	return p.in.Value, nil
}

// downloadRequest encodes Download's request value.
func downloadRequest(payload []byte, count uint64) *wrapperspb.BytesValue {
	v := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint64(v, count)
	copy(v[8:], payload)
	return &wrapperspb.BytesValue{Value: v}
}

// parseDownload decodes Download's request value.
func parseDownload(req *wrapperspb.BytesValue) (count uint64, payload []byte, err error) {
	if len(req.GetValue()) < 8 {
		return 0, nil, fmt.Errorf("download request of %d bytes, want at least 8", len(req.GetValue()))
	}
	return binary.BigEndian.Uint64(req.Value), req.Value[8:], nil
}

// echoStream is the server side of bench.Echo/Stream for both stacks:
// recv returns a new message each time (as generated stubs do).
func echoStream(recv func() (*wrapperspb.BytesValue, error), send func(*wrapperspb.BytesValue) error) error {
	for {
		m, err := recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := send(m); err != nil {
			return err
		}
	}
}

// download is the server side of bench.Echo/Download for both stacks.
func download(ctx context.Context, req *wrapperspb.BytesValue, send func(*wrapperspb.BytesValue) error) error {
	count, payload, err := parseDownload(req)
	if err != nil {
		return err
	}
	resp := &wrapperspb.BytesValue{Value: payload}
	for i := uint64(0); count == 0 || i < count; i++ {
		// A send to a cancelled call fails anyway; the check makes sure
		// an unbounded download ends even if a stack buffered it.
		if i&63 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := send(resp); err != nil {
			return err
		}
	}
	return nil
}

// openDownload sends Download's request on s and half-closes it.
func openDownload(s msgStream, payload []byte, count uint64) (Stream, error) {
	if err := s.SendMsg(downloadRequest(payload, count)); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := s.CloseSend(); err != nil {
		return nil, err
	}
	return &pbStream{s: s}, nil
}
