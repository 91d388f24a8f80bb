package grpc_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/kerneltest"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
	static "github.com/axonrpc/axon/plugins/registry-static"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// TestRuntimeConfig serves gRPC and gRPC-Web beside the native protocol on
// one port, configured from YAML as `axon serve` would be, with the
// grpc-web protocol's options under listen[].protocol_options.
func TestRuntimeConfig(t *testing.T) {
	cat, err := kernel.NewCatalog([]kernel.Factory{tcp.Factory, native.Factory, grpcproto.Factory, grpcproto.WebFactory, protocodec.Factory, static.Factory})
	if err != nil {
		t.Fatal(err)
	}
	svc := kernel.NewService(svcName, kernel.Unary("Echo", func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return wrapperspb.String(kernel.CallFromContext(ctx).Protocol + ":" + in.Value), nil
	}))
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc})
	if err != nil {
		t.Fatal(err)
	}
	rt := kerneltest.Run(t, cat, table, `
service: test
tls: {mode: "off"}
registry: {use: static}
listen:
  - address: "127.0.0.1:0"
    protocols: [axon, grpc, grpc-web]
    protocol_options:
      grpc-web: {cors: {allowed_origins: ["https://app.example.com"]}}
`)
	_, addr := kernel.SplitAddress(rt.Endpoints()[0].Address)

	var out wrapperspb.StringValue
	if err := dial(t, addr).Invoke(ctxT(t), mEcho, wrapperspb.String("a"), &out); err != nil || out.Value != "grpc:a" {
		t.Errorf("grpc-go: %q, %v", out.Value, err)
	}
	// Any HTTP/1.x method reaches grpc-web through the sniffer, to be told
	// that gRPC-Web calls are POST requests.
	for _, m := range []string{"GET", "DELETE", "PATCH"} {
		if res, _ := rawCall(t, h1Client(), m, "http://"+addr+mEcho, nil, nil); res.StatusCode != 405 {
			t.Errorf("%s: HTTP %s, want 405", m, res.Status)
		}
	}
	for _, tc := range []struct {
		origin string
		ok     bool
	}{{"", true}, {"https://app.example.com", true}, {"https://evil.example.com", false}} {
		c := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](h1Client(), "http://"+addr+mEcho, connect.WithGRPCWeb())
		req := connect.NewRequest(wrapperspb.String("b"))
		if tc.origin != "" {
			req.Header().Set("Origin", tc.origin)
		}
		res, err := c.CallUnary(ctxT(t), req)
		if tc.ok && (err != nil || res.Msg.Value != "grpc-web:b") {
			t.Errorf("origin %q: %v", tc.origin, err)
		}
		if !tc.ok && err == nil {
			t.Errorf("origin %q: allowed", tc.origin)
		}
	}
}
