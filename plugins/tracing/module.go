// Package tracing makes Axon calls OpenTelemetry spans and carries their
// context from hop to hop. The "tracing" interceptor, on the server side,
// continues the trace the caller sent (W3C Trace Context and Baggage in the
// call's metadata: traceparent, tracestate, baggage) with a server span per
// call, and on the client side makes each call a client span and sends its
// context on, over every protocol (native, gRPC, gRPC-Web), so one trace
// crosses every hop. Spans are named and attributed as the OpenTelemetry
// RPC semantic conventions say (rpc.system, rpc.service, rpc.method,
// rpc.grpc.status_code, network.peer.address, a "message" event per stream
// message).
//
// Spans come from the process's global TracerProvider (otel.SetTracerProvider):
// a program that sets up the OpenTelemetry SDK gets them exported; one that
// does not still carries the caller's trace context through to its own
// calls, so the trace is not broken at this service.
package tracing

import (
	"go.opentelemetry.io/otel"
	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
)

// Config is the tracing interceptor's options block. It has no keys yet:
// sampling and exporters belong to the TracerProvider.
type Config struct{}

// Factory builds the "tracing" interceptor, on the global TracerProvider.
var Factory = kernel.NewFactory(kernel.KindInterceptor, "tracing",
	func() Config { return Config{} },
	func(_ kernel.BuildContext, _ Config) (kernel.Interceptor, error) {
		return New(otel.GetTracerProvider()).Interceptor(), nil
	})

// Module contributes the tracing interceptor to an Axon application.
var Module = fx.Module("tracing", kernel.ProvideFactory(Factory))
