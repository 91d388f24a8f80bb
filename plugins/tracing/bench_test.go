package tracing_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/kerneltest"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	static "github.com/axonrpc/axon/plugins/registry-static"
	"github.com/axonrpc/axon/plugins/tracing"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// BenchmarkUnaryTracing measures what the tracing interceptor costs a
// native unary call, on both sides, over loopback TCP (one connection, one
// call at a time): without the interceptor; with it on a no-op provider
// (context carried, nothing recorded); on the SDK sampling nothing; and on
// the SDK sampling every call (spans ended into an exporter that drops
// them).
func BenchmarkUnaryTracing(b *testing.B) {
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	always := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter())))
	for _, bc := range []struct {
		name string
		tp   trace.TracerProvider // nil: no interceptor
	}{
		{"off", nil},
		{"noop", noop.NewTracerProvider()},
		{"sdk-never", never},
		{"sdk-always", always},
	} {
		b.Run(bc.name, func(b *testing.B) {
			intercept := "[]"
			var ics []kernel.Interceptor
			if bc.tp != nil {
				prev := otel.GetTracerProvider()
				otel.SetTracerProvider(bc.tp)
				b.Cleanup(func() { otel.SetTracerProvider(prev) })
				intercept = "[{use: tracing}]"
				ics = []kernel.Interceptor{tracing.New(bc.tp).Interceptor()}
			}
			type sv = wrapperspb.StringValue
			desc := kernel.NewService(svc, kernel.Unary("Echo", func(_ context.Context, in *sv) (*sv, error) { return in, nil }))
			cat, err := kernel.NewCatalog([]kernel.Factory{tcp.Factory, native.Factory, protocodec.Factory, static.Factory, tracing.Factory})
			if err != nil {
				b.Fatal(err)
			}
			table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{desc})
			if err != nil {
				b.Fatal(err)
			}
			rt := kerneltest.Run(b, cat, table, `
service: t
tls: {mode: "off"}
registry: {use: static}
listen: [{transport: tcp, address: "127.0.0.1:0"}]
server: {interceptors: `+intercept+`}
`)
			c, err := kernel.NewClient(kernel.ClientOptions{
				Target:       rt.Endpoints()[0].Address,
				Transports:   map[string]kernel.Transport{"tcp": tcp.New(tcp.DefaultConfig())},
				Protocol:     native.New(native.DefaultConfig()),
				Codec:        protocodec.Codec{},
				Interceptors: ics,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			in, out := wrapperspb.String("hello"), new(sv)
			if err := c.Invoke(context.Background(), mEcho, in, out); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Invoke(context.Background(), mEcho, in, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
