package tracing

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// instrumentation is the name of the tracer this package gets from its
// TracerProvider.
const instrumentation = "github.com/axonrpc/axon/plugins/tracing"

// Propagator is how calls carry trace context: W3C Trace Context
// (traceparent, tracestate) and W3C Baggage (baggage), in call metadata.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Tracer makes server and client calls spans of its TracerProvider and
// carries their context to the next hop. It is safe for concurrent use.
type Tracer struct {
	tracer trace.Tracer
}

// New returns a Tracer whose spans come from tp.
func New(tp trace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer(instrumentation)}
}

// Interceptor returns t's four sides as an Axon interceptor.
func (t *Tracer) Interceptor() kernel.Interceptor {
	return kernel.Interceptor{Server: t.Unary, StreamServer: t.Stream, Client: t.UnaryClient, StreamClient: t.StreamClient}
}

// Unary is the unary server interceptor: the call is a server span, a child
// of the context the caller sent (or a new trace), and the handler's context
// carries it, so the handler's own calls are its children.
func (t *Tracer) Unary(ctx context.Context, req any, next kernel.UnaryHandler) (any, error) {
	ctx, span := t.startServer(ctx)
	resp, err := next(ctx, req)
	endServer(span, err)
	return resp, err
}

// Stream is the stream server interceptor: a server span like Unary's, with
// an event per message sent and received.
func (t *Tracer) Stream(ss kernel.ServerStream, next kernel.StreamHandler) error {
	ctx, span := t.startServer(ss.Context())
	err := next(&serverStream{ServerStream: ss, ctx: ctx, events: events{span: span}})
	endServer(span, err)
	return err
}

// UnaryClient is the unary client interceptor: the call is a client span,
// a child of the span in ctx, whose context goes in the call's metadata.
func (t *Tracer) UnaryClient(ctx context.Context, spec *kernel.Spec, req, resp any, next kernel.UnaryInvoker) error {
	ctx, span := t.startClient(ctx, spec)
	err := next(inject(ctx), spec, req, resp)
	endClient(span, err)
	return err
}

// StreamClient is the stream client interceptor: a client span like
// UnaryClient's, with an event per message, which ends when RecvMsg
// returns an error (io.EOF included) or opening the stream fails. A stream
// not read to its end leaves its span unended, and it is not exported.
func (t *Tracer) StreamClient(ctx context.Context, spec *kernel.Spec, next kernel.Streamer) (kernel.ClientStream, error) {
	ctx, span := t.startClient(ctx, spec)
	cs, err := next(inject(ctx), spec)
	if err != nil {
		endClient(span, err)
		return nil, err
	}
	return &clientStream{ClientStream: cs, events: events{span: span}}, nil
}

// startServer starts the server span of the call in ctx. Attributes are
// computed only for a span that records.
func (t *Tracer) startServer(ctx context.Context) (context.Context, trace.Span) {
	if md := metadata.FromIncomingContext(ctx); md.Get("traceparent") != "" || md.Get("baggage") != "" {
		ctx = Propagator.Extract(ctx, carrier(md))
	}
	call := kernel.CallFromContext(ctx)
	name := "unknown"
	if call != nil {
		name = spanName(call.Spec())
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
	if !span.IsRecording() {
		return ctx, span
	}
	system := "axon"
	if call == nil {
		span.SetAttributes(attribute.String("rpc.system", system))
		return ctx, span
	}
	if call.Protocol == "grpc" || call.Protocol == "grpc-web" {
		system = "grpc"
	}
	spec := call.Spec()
	span.SetAttributes(attribute.String("rpc.system", system), attribute.String("rpc.service", spec.Service),
		attribute.String("rpc.method", spec.Method), attribute.String("axon.protocol", call.Protocol))
	if call.Peer != nil {
		span.SetAttributes(attribute.String("network.peer.address", call.Peer.String()))
	}
	return ctx, span
}

// startClient starts the client span of a call described by spec.
func (t *Tracer) startClient(ctx context.Context, spec *kernel.Spec) (context.Context, trace.Span) {
	ctx, span := t.tracer.Start(ctx, spanName(spec), trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("rpc.system", "axon"), attribute.String("rpc.service", spec.Service),
			attribute.String("rpc.method", spec.Method))
	}
	return ctx, span
}

// spanName is "pkg.Service/Method", as the RPC semantic conventions name
// spans; a method name not of that form is used as it is.
func spanName(spec *kernel.Spec) string {
	if spec.Service == "" {
		return spec.FullMethod
	}
	return spec.Service + "/" + spec.Method
}

// inject returns ctx whose outgoing metadata also carries the trace context
// (and baggage) of ctx; ctx itself when it has neither. The metadata in ctx
// is copied, not changed.
func inject(ctx context.Context) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() && baggage.FromContext(ctx).Len() == 0 {
		return ctx
	}
	md := metadata.FromOutgoingContext(ctx).Copy()
	if md == nil {
		md = metadata.MD{}
	}
	Propagator.Inject(ctx, carrier(md))
	return metadata.NewOutgoingContext(ctx, md)
}

// serverErrors are the status codes that make a server span an error, as
// the RPC semantic conventions say: the others are the caller's doing.
var serverErrors = map[status.Code]bool{
	status.Unknown: true, status.DeadlineExceeded: true, status.Unimplemented: true,
	status.Internal: true, status.Unavailable: true, status.DataLoss: true,
}

func endServer(span trace.Span, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	code := status.CodeOf(err)
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	if serverErrors[code] {
		span.SetStatus(codes.Error, status.FromError(err).Message())
	}
	span.End()
}

func endClient(span trace.Span, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	code := status.CodeOf(err)
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	if code != status.OK {
		span.SetStatus(codes.Error, status.FromError(err).Message())
	}
	span.End()
}

// carrier is call metadata as an OpenTelemetry TextMapCarrier.
type carrier metadata.MD

func (c carrier) Get(key string) string { return metadata.MD(c).Get(key) }

func (c carrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// events records the messages of one stream as the RPC semantic
// conventions' "message" events on its span, numbered per direction.
type events struct {
	span           trace.Span
	sent, received atomic.Int64
}

// record adds the event of a message sent (or received) if err is nil,
// and returns err.
func (e *events) record(sent bool, err error) error {
	if err != nil || !e.span.IsRecording() {
		return err
	}
	typ, id := "RECEIVED", &e.received
	if sent {
		typ, id = "SENT", &e.sent
	}
	e.span.AddEvent("message", trace.WithAttributes(attribute.String("message.type", typ), attribute.Int64("message.id", id.Add(1))))
	return nil
}

// serverStream is a server stream whose context carries its span.
type serverStream struct {
	kernel.ServerStream
	ctx context.Context
	events
}

func (s *serverStream) Context() context.Context { return s.ctx }

func (s *serverStream) SendMsg(m any) error { return s.record(true, s.ServerStream.SendMsg(m)) }

func (s *serverStream) RecvMsg(m any) error { return s.record(false, s.ServerStream.RecvMsg(m)) }

// clientStream is a client stream that ends its span with the call.
type clientStream struct {
	kernel.ClientStream
	events
	once sync.Once
}

func (s *clientStream) SendMsg(m any) error { return s.record(true, s.ClientStream.SendMsg(m)) }

func (s *clientStream) RecvMsg(m any) error {
	err := s.record(false, s.ClientStream.RecvMsg(m))
	if err != nil {
		s.once.Do(func() {
			end := err
			if errors.Is(end, io.EOF) {
				end = nil // the call ended with OK
			}
			endClient(s.span, end)
		})
	}
	return err
}
