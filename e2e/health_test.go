package e2e_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/axonrpc/axon/examples/echo"
	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
	static "github.com/axonrpc/axon/plugins/registry-static"
	health "github.com/axonrpc/axon/plugins/service-health"
	reflection "github.com/axonrpc/axon/plugins/service-reflection"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// TestStandardServicesWithGRPCGo checks health and reflection with grpc-go's
// own clients against an Axon server: Check, reflection's service list, and
// a Watch that sees NOT_SERVING when the server begins to shut down and then
// ends, so the drain is not held up by it.
func TestStandardServicesWithGRPCGo(t *testing.T) {
	cat, err := kernel.NewCatalog([]kernel.Factory{tcp.Factory, native.Factory, grpcproto.Factory, protocodec.Factory, static.Factory})
	if err != nil {
		t.Fatal(err)
	}
	hs, rs := health.New(), reflection.New()
	table, err := kernel.NewServiceTable(append([]*kernel.ServiceDesc{echopb.NewEchoService(echo.Server{}), hs.Desc()}, rs.Descs()...))
	if err != nil {
		t.Fatal(err)
	}
	rt := kernel.NewRuntime(cat, table, slog.New(slog.DiscardHandler))
	hs.Attach(table, rt.Stopping())
	rs.Attach(table)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := rt.Apply(ctx, parseConfig(t, "service: std\ntls: {mode: \"off\"}\nregistry: {use: static}\n"+
		"listen: [{transport: tcp, address: \"127.0.0.1:0\", protocols: [axon, grpc]}]\n")); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			rt.Shutdown(ctx)
		}
	}()
	conn, err := grpc.NewClient(hostPort(rt.Endpoints()[0].Address), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)

	for _, tc := range []struct {
		service string
		want    healthpb.HealthCheckResponse_ServingStatus
		code    codes.Code
	}{
		{"", healthpb.HealthCheckResponse_SERVING, codes.OK},
		{echopb.Echo_ServiceName, healthpb.HealthCheckResponse_SERVING, codes.OK},
		{"no.Such", 0, codes.NotFound},
	} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: tc.service})
		if grpcstatus.Code(err) != tc.code || resp.GetStatus() != tc.want {
			t.Errorf("Check(%q) = %v, %v; want %v, code %v", tc.service, resp.GetStatus(), err, tc.want, tc.code)
		}
	}

	// Reflection lists every service, the standard ones included.
	rc, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	lr, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range lr.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{echopb.Echo_ServiceName, health.ServiceName, reflection.V1Name, reflection.V1AlphaName} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	rc.CloseSend()
	if _, err := rc.Recv(); err != io.EOF {
		t.Fatalf("reflection stream after CloseSend: %v, want EOF", err)
	}

	// A watch sees SERVING, then NOT_SERVING once shutdown begins; then it
	// ends and the shutdown completes.
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: echopb.Echo_ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch message: %v, %v; want SERVING", r.GetStatus(), err)
	}
	shut := make(chan error, 1)
	stopped = true
	go func() { shut <- rt.Shutdown(ctx) }()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after shutdown began: %v, %v; want NOT_SERVING", r.GetStatus(), err)
	}
	if _, err := w.Recv(); grpcstatus.Code(err) != codes.Unavailable {
		t.Fatalf("Watch end: %v, want UNAVAILABLE", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown with a watch open: %v", err)
	}
}
