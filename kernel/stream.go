package kernel

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// ServerStream is the server's side of a streaming call, as a protocol gives
// it to a handler. One goroutine may send while another receives; two
// concurrent senders or two concurrent receivers are not allowed. It is
// owned by the call and must not be used after the handler returns.
type ServerStream interface {
	// Context returns the call's context: its deadline, its incoming
	// metadata, and the ServerCall (see CallFromContext). It is cancelled
	// when the client cancels or the call ends.
	Context() context.Context
	// SendHeader sends the response header metadata now: md together with
	// what SetHeader added. Without it, the header goes with the first
	// message or the trailers. Calling it twice is an error.
	SendHeader(md metadata.MD) error
	// SendMsg encodes m and sends it. It blocks while the peer's flow
	// control window is full, and returns an error once the call has ended.
	// m may be reused once SendMsg returns.
	SendMsg(m any) error
	// RecvMsg decodes the next message from the client into m. It returns
	// io.EOF once the client has half-closed, or the error that ended the
	// call.
	RecvMsg(m any) error
}

// StreamHandler runs a streaming method. Returning nil ends the call with OK;
// an error becomes the call's status (see status.FromError). Trailer metadata
// comes from SetTrailer on the stream's context.
type StreamHandler func(stream ServerStream) error

// StreamServerInterceptor wraps a server's handling of a streaming call. The
// method is in CallFromContext(stream.Context()). It may wrap stream to see
// each message.
type StreamServerInterceptor func(stream ServerStream, next StreamHandler) error

// ClientStream is the client's side of a streaming call. One goroutine may
// send while another receives. Reading until RecvMsg returns an error, or
// cancelling the context the stream was opened with, releases it.
type ClientStream interface {
	// Context returns the context the stream was opened with.
	Context() context.Context
	// Header waits for the server's header metadata. It returns an error
	// when the call ended without one.
	Header() (metadata.MD, error)
	// Trailer returns the trailer metadata. It is complete only after
	// RecvMsg has returned an error (io.EOF included).
	Trailer() metadata.MD
	// SendMsg encodes m and sends it, blocking while the server's flow
	// control window is full. After the call has ended it returns io.EOF;
	// RecvMsg then gives the call's status. m may be reused once SendMsg
	// returns.
	SendMsg(m any) error
	// CloseSend half-closes the stream: the server's RecvMsg sees io.EOF.
	CloseSend() error
	// RecvMsg decodes the next message from the server into m. At the end
	// of a successful call it returns io.EOF; otherwise a *status.Error.
	RecvMsg(m any) error
}

// Streamer opens the streaming call that spec describes.
type Streamer func(ctx context.Context, spec *Spec) (ClientStream, error)

// StreamClientInterceptor wraps the opening of a client's streaming call. It
// may wrap the stream it returns to see each message. spec is shared and
// must not be modified.
type StreamClientInterceptor func(ctx context.Context, spec *Spec, next Streamer) (ClientStream, error)

// chainStreamServer composes interceptors around h, outermost first.
func chainStreamServer(ics []StreamServerInterceptor, h StreamHandler) StreamHandler {
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], h
		h = func(s ServerStream) error { return ic(s, next) }
	}
	return h
}

// chainStreamClient composes interceptors around s, outermost first.
func chainStreamClient(ics []StreamClientInterceptor, s Streamer) Streamer {
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], s
		s = func(ctx context.Context, spec *Spec) (ClientStream, error) { return ic(ctx, spec, next) }
	}
	return s
}

// IsStreaming reports whether m is a streaming method (of any shape).
func (m *MethodDesc) IsStreaming() bool { return m.ClientStreams || m.ServerStreams }

// HandleStream runs the stream interceptor chain and the handler of r on
// stream. A unary method is served too: its one request is read, the unary
// chain runs, and the response is sent, so a protocol that sees every call as
// a stream (gRPC) needs no second path. A panic anywhere in the chain is
// recovered, logged with its stack, and becomes INTERNAL. A call whose
// context is already done gets DEADLINE_EXCEEDED (or CANCELLED) and runs
// nothing.
func (d *Dispatcher) HandleStream(r *Route, stream ServerStream) (err error) {
	r, ok := d.enter(r)
	if !ok {
		return errStopping
	}
	defer r.table.leave()
	defer func() {
		if p := recover(); p != nil {
			r.table.log.Error("handler panic", "method", r.Method.FullName, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = status.Errorf(status.Internal, "handler panic in %s", r.Method.FullName)
		}
	}()
	if err := stream.Context().Err(); err != nil {
		return expired(r, err)
	}
	if r.stream != nil {
		return r.stream(stream)
	}
	req := r.Method.NewRequest()
	if err := recvOnly(stream, req, r.Method.FullName); err != nil {
		return err
	}
	resp, err := r.handle(stream.Context(), req)
	if err != nil {
		return err
	}
	return stream.SendMsg(resp)
}

// recvOnly reads the one request message of a unary or server-streaming
// call into m and checks that the client then half-closed. A call with no
// request message or more than one violates the method's cardinality, which
// gRPC answers with UNIMPLEMENTED.
func recvOnly(s ServerStream, m any, method string) error {
	if err := s.RecvMsg(m); err != nil {
		if err == io.EOF {
			return status.Errorf(status.Unimplemented, "%s takes one request message; the client sent none", method)
		}
		return err
	}
	// A second message, if any, is decoded into m too: the call fails
	// then, so m is not used, and the check allocates nothing.
	switch err := s.RecvMsg(m); err {
	case io.EOF:
		return nil
	case nil:
		return status.Errorf(status.Unimplemented, "%s takes one request message; the client sent more", method)
	default:
		return err
	}
}

// ServerStreamingServer is the typed server side of a server-streaming call.
type ServerStreamingServer[Resp any] struct{ ServerStream }

// Send sends one response message.
func (s ServerStreamingServer[Resp]) Send(m *Resp) error { return s.SendMsg(m) }

// ClientStreamingServer is the typed server side of a client-streaming call.
type ClientStreamingServer[Req, Resp any] struct{ ServerStream }

// Recv returns the next request message, or io.EOF after the last one.
func (s ClientStreamingServer[Req, Resp]) Recv() (*Req, error) {
	m := new(Req)
	if err := s.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// SendAndClose sends the one response message; the handler then returns nil.
func (s ClientStreamingServer[Req, Resp]) SendAndClose(m *Resp) error { return s.SendMsg(m) }

// BidiStreamingServer is the typed server side of a bidirectional call.
type BidiStreamingServer[Req, Resp any] struct{ ServerStream }

// Recv returns the next request message, or io.EOF after the last one.
func (s BidiStreamingServer[Req, Resp]) Recv() (*Req, error) {
	m := new(Req)
	if err := s.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Send sends one response message.
func (s BidiStreamingServer[Req, Resp]) Send(m *Resp) error { return s.SendMsg(m) }

// ServerStreaming returns the description of a server-streaming method named
// name: h gets the one request and sends any number of responses.
func ServerStreaming[Req, Resp any](name string, h func(*Req, ServerStreamingServer[Resp]) error) *MethodDesc {
	md := &MethodDesc{
		Name: name, ServerStreams: true,
		NewRequest:  func() any { return new(Req) },
		NewResponse: func() any { return new(Resp) },
	}
	md.Stream = func(s ServerStream) error {
		// The full name, as gRPC's cardinality errors say it (NewService
		// sets it); the short name for a method in no service.
		method := md.FullName
		if method == "" {
			method = name
		}
		req := new(Req)
		if err := recvOnly(s, req, method); err != nil {
			return err
		}
		return h(req, ServerStreamingServer[Resp]{s})
	}
	return md
}

// ClientStreaming returns the description of a client-streaming method named
// name: h receives requests until io.EOF and sends one response with
// SendAndClose.
func ClientStreaming[Req, Resp any](name string, h func(ClientStreamingServer[Req, Resp]) error) *MethodDesc {
	return &MethodDesc{
		Name: name, ClientStreams: true,
		NewRequest:  func() any { return new(Req) },
		NewResponse: func() any { return new(Resp) },
		Stream:      func(s ServerStream) error { return h(ClientStreamingServer[Req, Resp]{s}) },
	}
}

// BidiStreaming returns the description of a bidirectional streaming method
// named name.
func BidiStreaming[Req, Resp any](name string, h func(BidiStreamingServer[Req, Resp]) error) *MethodDesc {
	return &MethodDesc{
		Name: name, ClientStreams: true, ServerStreams: true,
		NewRequest:  func() any { return new(Req) },
		NewResponse: func() any { return new(Resp) },
		Stream:      func(s ServerStream) error { return h(BidiStreamingServer[Req, Resp]{s}) },
	}
}

// ServerStreamingClient is the typed client side of a server-streaming call.
type ServerStreamingClient[Resp any] struct{ ClientStream }

// Recv returns the next response, io.EOF after the last one of a successful
// call, or the call's status.
func (s ServerStreamingClient[Resp]) Recv() (*Resp, error) {
	m := new(Resp)
	if err := s.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// ClientStreamingClient is the typed client side of a client-streaming call.
type ClientStreamingClient[Req, Resp any] struct{ ClientStream }

// Send sends one request message.
func (s ClientStreamingClient[Req, Resp]) Send(m *Req) error { return s.SendMsg(m) }

// CloseAndRecv half-closes the stream and waits for the one response.
func (s ClientStreamingClient[Req, Resp]) CloseAndRecv() (*Resp, error) {
	if err := s.CloseSend(); err != nil {
		return nil, err
	}
	m := new(Resp)
	if err := s.RecvMsg(m); err != nil {
		if err == io.EOF {
			return nil, status.New(status.Internal, "the server ended the call without a response")
		}
		return nil, err
	}
	// Read the end of the call, so its status and trailers are seen.
	if err := s.RecvMsg(new(Resp)); err != io.EOF {
		if err == nil {
			return nil, status.New(status.Internal, "the server sent more than one response")
		}
		return nil, err
	}
	return m, nil
}

// BidiStreamingClient is the typed client side of a bidirectional call.
type BidiStreamingClient[Req, Resp any] struct{ ClientStream }

// Send sends one request message.
func (s BidiStreamingClient[Req, Resp]) Send(m *Req) error { return s.SendMsg(m) }

// Recv returns the next response, io.EOF after the last one of a successful
// call, or the call's status.
func (s BidiStreamingClient[Req, Resp]) Recv() (*Resp, error) {
	m := new(Resp)
	if err := s.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// OpenServerStream opens a server-streaming call on inv, sends req and
// half-closes. Generated clients call it.
func OpenServerStream[Req, Resp any](ctx context.Context, inv Invoker, method string, req *Req, opts ...CallOption) (ServerStreamingClient[Resp], error) {
	s, err := inv.NewStream(ctx, method, append(opts, StreamTypes[Req, Resp](), shapeOptions[StreamTypeServer])...)
	if err != nil {
		return ServerStreamingClient[Resp]{}, err
	}
	if err := s.SendMsg(req); err != nil && err != io.EOF {
		return ServerStreamingClient[Resp]{}, err
	}
	if err := s.CloseSend(); err != nil {
		return ServerStreamingClient[Resp]{}, err
	}
	return ServerStreamingClient[Resp]{s}, nil
}

// OpenClientStream opens a client-streaming call on inv. Generated clients
// call it.
func OpenClientStream[Req, Resp any](ctx context.Context, inv Invoker, method string, opts ...CallOption) (ClientStreamingClient[Req, Resp], error) {
	s, err := inv.NewStream(ctx, method, append(opts, StreamTypes[Req, Resp](), shapeOptions[StreamTypeClient])...)
	return ClientStreamingClient[Req, Resp]{s}, err
}

// OpenBidiStream opens a bidirectional call on inv. Generated clients call
// it.
func OpenBidiStream[Req, Resp any](ctx context.Context, inv Invoker, method string, opts ...CallOption) (BidiStreamingClient[Req, Resp], error) {
	s, err := inv.NewStream(ctx, method, append(opts, StreamTypes[Req, Resp](), shapeOptions[StreamTypeBidi])...)
	return BidiStreamingClient[Req, Resp]{s}, err
}
