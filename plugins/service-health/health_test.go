package health_test

import (
	"context"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	health "github.com/axonrpc/axon/plugins/service-health"
)

func newServer(t *testing.T) (*health.Server, chan struct{}) {
	t.Helper()
	s := health.New()
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{s.Desc(), kernel.NewService("a.B")})
	if err != nil {
		t.Fatal(err)
	}
	stopping := make(chan struct{})
	s.Attach(table, stopping)
	return s, stopping
}

func TestCheck(t *testing.T) {
	s, stopping := newServer(t)
	s.SetServingStatus("a.Custom", healthpb.HealthCheckResponse_NOT_SERVING)
	tests := []struct {
		service string
		stop    bool
		want    healthpb.HealthCheckResponse_ServingStatus
		code    status.Code
	}{
		{"", false, healthpb.HealthCheckResponse_SERVING, status.OK},
		{"a.B", false, healthpb.HealthCheckResponse_SERVING, status.OK},
		{health.ServiceName, false, healthpb.HealthCheckResponse_SERVING, status.OK},
		{"a.Custom", false, healthpb.HealthCheckResponse_NOT_SERVING, status.OK},
		{"no.Such", false, 0, status.NotFound},
		{"", true, healthpb.HealthCheckResponse_NOT_SERVING, status.OK},
		{"a.B", true, healthpb.HealthCheckResponse_NOT_SERVING, status.OK},
	}
	for _, tt := range tests {
		if tt.stop {
			select {
			case <-stopping:
			default:
				close(stopping)
			}
		}
		resp, err := s.Check(context.Background(), &healthpb.HealthCheckRequest{Service: tt.service})
		if status.CodeOf(err) != tt.code {
			t.Errorf("Check(%q) stopping=%v: error %v, want code %v", tt.service, tt.stop, err, tt.code)
			continue
		}
		if err == nil && resp.GetStatus() != tt.want {
			t.Errorf("Check(%q) stopping=%v = %v, want %v", tt.service, tt.stop, resp.GetStatus(), tt.want)
		}
	}
}

func TestList(t *testing.T) {
	s, _ := newServer(t)
	resp, err := s.List(context.Background(), &healthpb.HealthListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "a.B", health.ServiceName} {
		if resp.Statuses[name].GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("List()[%q] = %v, want SERVING", name, resp.Statuses[name])
		}
	}
}

// watchStream records what Watch sends.
type watchStream struct {
	ctx  context.Context
	sent chan healthpb.HealthCheckResponse_ServingStatus
}

func (w *watchStream) Context() context.Context     { return w.ctx }
func (w *watchStream) SendHeader(metadata.MD) error { return nil }
func (w *watchStream) RecvMsg(any) error            { return nil }
func (w *watchStream) SendMsg(m any) error {
	w.sent <- m.(*healthpb.HealthCheckResponse).GetStatus()
	return nil
}

func TestWatchFollowsChangesAndStops(t *testing.T) {
	s, stopping := newServer(t)
	w := &watchStream{ctx: context.Background(), sent: make(chan healthpb.HealthCheckResponse_ServingStatus, 10)}
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(&healthpb.HealthCheckRequest{Service: "a.B"}, kernel.ServerStreamingServer[healthpb.HealthCheckResponse]{ServerStream: w})
	}()
	next := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		select {
		case got := <-w.sent:
			if got != want {
				t.Fatalf("Watch sent %v, want %v", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Watch sent nothing, want %v", want)
		}
	}
	next(healthpb.HealthCheckResponse_SERVING)
	s.SetServingStatus("a.B", healthpb.HealthCheckResponse_NOT_SERVING)
	next(healthpb.HealthCheckResponse_NOT_SERVING)
	s.SetServingStatus("a.B", healthpb.HealthCheckResponse_SERVING)
	next(healthpb.HealthCheckResponse_SERVING)
	close(stopping)
	next(healthpb.HealthCheckResponse_NOT_SERVING)
	if err := <-done; status.CodeOf(err) != status.Unavailable {
		t.Fatalf("Watch ended with %v after the server began to stop, want UNAVAILABLE", err)
	}
}

func TestWatchUnknownService(t *testing.T) {
	s, _ := newServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := &watchStream{ctx: ctx, sent: make(chan healthpb.HealthCheckResponse_ServingStatus, 10)}
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(&healthpb.HealthCheckRequest{Service: "no.Such"}, kernel.ServerStreamingServer[healthpb.HealthCheckResponse]{ServerStream: w})
	}()
	if got := <-w.sent; got != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("Watch(unknown) sent %v, want SERVICE_UNKNOWN", got)
	}
	cancel()
	if err := <-done; status.CodeOf(err) != status.Canceled {
		t.Fatalf("Watch ended with %v after cancel, want CANCELED", err)
	}
}
