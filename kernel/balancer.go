package kernel

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// The client-side governance extension points: a Balancer picks one of the
// target's endpoints per call, a Router narrows the endpoints a call may use
// (by colour, metadata or percentage), and a Guard (an interceptor's
// per-endpoint side, such as a circuit breaker) admits or rejects a call once
// its endpoint is known and learns its outcome. The client keeps the live
// counters they read (calls in flight, latency, ejection) on each Backend.
//
// Why three small interfaces rather than a picker that does everything:
// routing and breaking are independent of the balancing algorithm, so any
// balancer plugin works with any router and any breaker, and none of them
// imports another (they meet only at these kernel types).

// Backend is one endpoint of a client's target with the state the client
// keeps for it. Balancers, routers and guards read it; only the client
// changes it. Its methods are safe for concurrent use. A Backend lives as
// long as its address stays in the target's endpoint set, so it may be used
// as a map key.
type Backend struct {
	addr      string
	transport Transport
	address   string // transport-specific part of addr
	info      atomic.Pointer[Endpoint]
	slots     []connSlot
	// gone is cancelled when the endpoint leaves the set: dials to it stop.
	gone   context.Context
	cancel context.CancelFunc

	inflight atomic.Int32 // only for NewBackend: sessions count the client's calls
	ewma     atomic.Int64 // latency EWMA in ns; 0 until the first sample

	// Outlier ejection.
	fails        atomic.Int32 // consecutive failures
	ejectedUntil atomic.Int64 // unix ns; 0 when not ejected
	ejections    atomic.Int32 // times ejected in a row, for the growing period
}

// Address returns the endpoint's address, such as "tcp://127.0.0.1:7443".
func (b *Backend) Address() string { return b.addr }

// Labels returns the endpoint's registry labels; the map must not be
// modified.
func (b *Backend) Labels() map[string]string { return b.info.Load().Labels }

// Weight returns the endpoint's relative share of traffic, at least 1.
func (b *Backend) Weight() int { return max(b.info.Load().Weight, 1) }

// InFlight returns the number of the client's calls in progress on the
// endpoint's connections. It reads the sessions' own counts, so the call
// path keeps no counter for it.
func (b *Backend) InFlight() int {
	n := int(b.inflight.Load())
	for i := range b.slots {
		if sb := b.slots[i].sess.Load(); sb != nil {
			n += sb.s.InFlight()
		}
	}
	return n
}

// Latency returns an exponentially weighted moving average of the
// endpoint's call latency, or 0 when unknown. The client measures it only
// for a balancer that implements LatencyBalancer.
func (b *Backend) Latency() time.Duration { return time.Duration(b.ewma.Load()) }

// Ejected reports whether outlier ejection currently keeps calls away from
// the endpoint.
func (b *Backend) Ejected() bool { return b.ejectedAt(time.Now().UnixNano()) }

func (b *Backend) ejectedAt(now int64) bool {
	u := b.ejectedUntil.Load()
	return u != 0 && now < u
}

// PickInfo describes the call a balancer or router chooses an endpoint for.
// It is valid only during the Pick or Route call.
type PickInfo struct {
	// Ctx is the call's context: its deadline, its outgoing metadata and
	// whatever interceptors put in it (such as a span).
	Ctx context.Context
	// Spec describes the call.
	Spec *Spec
	// Method is the full method name "/pkg.Service/Method" (Spec.FullMethod).
	Method string
	// Metadata is the call's outgoing metadata (may be nil); read only.
	Metadata metadata.MD
}

// Balancer picks an endpoint for each call. An instance serves one client
// and is called concurrently; Pick must not block.
type Balancer interface {
	// Pick returns the index in backends (never empty) of the endpoint
	// that should serve the call. The client skips endpoints that are
	// ejected or whose guard is open when others are available, and tries
	// the next ones in order when the picked one cannot be reached, so
	// Pick need not check health. It must not retain backends.
	Pick(p *PickInfo, backends []*Backend) int
}

// LatencyBalancer is a Balancer that reads Backend.Latency: the client
// measures each call's latency only for such a balancer.
type LatencyBalancer interface {
	Balancer
	// TracksLatency reports whether the client should measure latency.
	TracksLatency() bool
}

// Router narrows the endpoints a call may use, such as to the endpoints
// labelled version=v2 for calls coloured canary. An instance serves one
// client.
type Router interface {
	// Update is called with the client's endpoints whenever they change,
	// and before the router's first Route. It is never called concurrently
	// with itself; Route may run concurrently with it.
	Update(all []*Backend)
	// Route returns the endpoints the call may go to: nil means all of
	// them. An error (such as UNAVAILABLE when no endpoint matches and the
	// rule's fallback is to fail) fails the call without sending it. The
	// result may be shared between calls and must not be modified.
	Route(p *PickInfo) ([]*Backend, error)
}

// Guard is the per-endpoint side of an interceptor, such as a circuit
// breaker: it sees each attempt once its endpoint is picked. Methods are
// called concurrently.
type Guard interface {
	// Admit is called before an attempt of the call that spec describes is
	// sent to b; ctx is the call's context. It returns done, which the
	// client calls exactly once with the attempt's result (nil for
	// success), or an error that fails the attempt at once without sending
	// it.
	Admit(ctx context.Context, b *Backend, spec *Spec) (done func(error), err error)
	// Available reports whether Admit would admit a call to method on b
	// now. The client picks an available endpoint when there is one.
	Available(b *Backend, method string) bool
}

// OutlierConfig configures outlier ejection: an endpoint that fails
// ConsecutiveFailures calls in a row (with a server-side error: UNAVAILABLE,
// DEADLINE_EXCEEDED, INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED) takes no new
// calls for BaseEjection, doubled at each further ejection up to
// MaxEjection; at most MaxEjectedShare of the endpoints are ejected at once.
type OutlierConfig struct {
	// ConsecutiveFailures ejects an endpoint after that many failures in a
	// row; 0 (the default) turns ejection off.
	ConsecutiveFailures int `yaml:"consecutive_failures" min:"0" max:"1000000"`
	// BaseEjection is the first ejection's length (default 10s).
	BaseEjection time.Duration `yaml:"base_ejection" min:"1ms" max:"24h"`
	// MaxEjection caps the growing ejection period (default 5m).
	MaxEjection time.Duration `yaml:"max_ejection" min:"1ms" max:"24h"`
	// MaxEjectedShare is the largest fraction of endpoints ejected at once
	// (default 0.5); at least one endpoint is always left.
	MaxEjectedShare float64 `yaml:"max_ejected_share" min:"0" max:"1"`
}

// DefaultOutlierConfig returns the defaults: ejection off.
func DefaultOutlierConfig() OutlierConfig {
	return OutlierConfig{BaseEjection: 10 * time.Second, MaxEjection: 5 * time.Minute, MaxEjectedShare: 0.5}
}

// serverFailure reports whether err counts against an endpoint for outlier
// ejection: errors of the server or the network, not of the caller.
func serverFailure(err error) bool {
	if err == nil || status.IsRefused(err) {
		return false
	}
	switch status.CodeOf(err) {
	case status.Unavailable, status.DeadlineExceeded, status.Internal, status.Unknown, status.ResourceExhausted:
		return true
	}
	return false
}

// roundRobin is the default balancer: each call takes the next endpoint.
type roundRobin struct{ next atomic.Uint64 }

// RoundRobin returns a balancer that sends each call to the next endpoint in
// turn. It is the client's default.
func RoundRobin() Balancer { return &roundRobin{} }

func (r *roundRobin) Pick(_ *PickInfo, backends []*Backend) int {
	return int(r.next.Add(1) % uint64(len(backends)))
}

// NewBackend returns a Backend for ep that belongs to no client, for tests
// of balancers, routers and guards. inFlight sets its calls in progress.
func NewBackend(ep Endpoint, inFlight int) *Backend {
	b := &Backend{addr: ep.Address}
	b.info.Store(&ep)
	b.inflight.Store(int32(inFlight))
	return b
}
