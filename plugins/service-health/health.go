// Package health serves grpc.health.v1.Health for every service of an Axon
// server, over every protocol the server speaks: Check and List answer at
// once, Watch streams each change. Every registered service is SERVING unless
// the application says otherwise (Server.SetServingStatus); once the server
// begins to shut down, every service is NOT_SERVING while calls in flight
// drain.
package health

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
)

// ServiceName is the full name of the health service.
const ServiceName = "grpc.health.v1.Health"

// Server keeps the serving status of a server's services. It is safe for
// concurrent use.
type Server struct {
	table    atomic.Pointer[kernel.ServiceTable]
	stopping atomic.Pointer[<-chan struct{}]

	mu       sync.Mutex
	override map[string]healthpb.HealthCheckResponse_ServingStatus
	changed  chan struct{} // closed and replaced at every change
}

// New returns a server that knows no services until Attach.
func New() *Server {
	return &Server{override: map[string]healthpb.HealthCheckResponse_ServingStatus{}, changed: make(chan struct{})}
}

// Attach gives s the services it reports on and a channel closed when the
// server begins to stop. fx calls it once the service table exists.
func (s *Server) Attach(t *kernel.ServiceTable, stopping <-chan struct{}) {
	s.table.Store(t)
	s.stopping.Store(&stopping)
	s.notify()
}

// SetServingStatus sets the status reported for service ("" is the server as
// a whole). Watchers see the change.
func (s *Server) SetServingStatus(service string, st healthpb.HealthCheckResponse_ServingStatus) {
	s.mu.Lock()
	s.override[service] = st
	s.mu.Unlock()
	s.notify()
}

func (s *Server) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *Server) stopped() bool {
	if p := s.stopping.Load(); p != nil {
		select {
		case <-*p:
			return true
		default:
		}
	}
	return false
}

// status returns the status of service and whether it is known, with the
// channel that is closed at the next change.
func (s *Server) status(service string) (healthpb.HealthCheckResponse_ServingStatus, bool, <-chan struct{}) {
	s.mu.Lock()
	st, set := s.override[service]
	changed := s.changed
	s.mu.Unlock()
	known := set || service == "" || s.registered(service)
	switch {
	case !known:
		return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, false, changed
	case s.stopped():
		return healthpb.HealthCheckResponse_NOT_SERVING, true, changed
	case set:
		return st, true, changed
	default:
		return healthpb.HealthCheckResponse_SERVING, true, changed
	}
}

func (s *Server) registered(service string) bool {
	t := s.table.Load()
	if t == nil {
		return false
	}
	for _, d := range t.Services() {
		if d.Name == service {
			return true
		}
	}
	return false
}

// Check answers the status of one service; an unknown one is NOT_FOUND.
func (s *Server) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, known, _ := s.status(req.GetService())
	if !known {
		return nil, status.Errorf(status.NotFound, "health: unknown service %q", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// List answers the status of every registered service and of the server.
func (s *Server) List(ctx context.Context, _ *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	names := []string{""}
	if t := s.table.Load(); t != nil {
		for _, d := range t.Services() {
			names = append(names, d.Name)
		}
	}
	s.mu.Lock()
	for n := range s.override {
		names = append(names, n)
	}
	s.mu.Unlock()
	sort.Strings(names)
	out := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	for _, n := range names {
		st, _, _ := s.status(n)
		out.Statuses[n] = &healthpb.HealthCheckResponse{Status: st}
	}
	return out, nil
}

// Watch sends the status of a service now and at every change, until the
// caller cancels. An unknown service is reported as SERVICE_UNKNOWN, not as
// an error, as the health protocol asks. Once the server stops, Watch sends
// NOT_SERVING and ends the stream with UNAVAILABLE, so that the drain does
// not wait for it.
func (s *Server) Watch(req *healthpb.HealthCheckRequest, stream kernel.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	ctx := stream.Context()
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		// Whether the server was stopping is read before the status, so
		// that a status computed before the stop is never the last one
		// sent.
		stopped := s.stopped()
		st, _, changed := s.status(req.GetService())
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		if stopped {
			return status.New(status.Unavailable, "health: the server is stopping")
		}
		var stopping <-chan struct{}
		if p := s.stopping.Load(); p != nil {
			stopping = *p
		}
		select {
		case <-ctx.Done():
			return status.FromError(ctx.Err())
		case <-changed:
		case <-stopping:
		}
	}
}

// Desc returns the description of the health service served by s.
func (s *Server) Desc() *kernel.ServiceDesc {
	return kernel.NewService(ServiceName,
		kernel.Unary("Check", s.Check),
		kernel.Unary("List", s.List),
		kernel.ServerStreaming("Watch", s.Watch),
	)
}
