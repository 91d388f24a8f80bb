package transporttest

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
)

const svcName = "axon.transporttest.v1.Conformance"

// Full method names of the test service.
const (
	mEcho  = "/" + svcName + "/Echo"  // BytesValue: returns the request
	mGrow  = "/" + svcName + "/Grow"  // UInt32Value n: returns a BytesValue of n bytes
	mBlock = "/" + svcName + "/Block" // StringValue token: blocks until released or its context ends
	mPanic = "/" + svcName + "/Panic" // StringValue: panics
)

// observation is what a Block handler saw of its context.
type observation struct {
	err         error // ctx.Err() when the handler returned; nil if released
	hasDeadline bool
	left        time.Duration // time to the deadline when the handler started
}

// gate controls the Block calls with one token.
type gate struct {
	once     sync.Once
	startup  sync.Once
	started  chan struct{}    // closed when a handler for the token starts
	release  chan struct{}    // closed to let the handler return successfully
	observed chan observation // what the (first) handler saw
}

// service is the suite's test service. It records what its handlers
// observe, so that subtests can check the server side.
type service struct {
	mu      sync.Mutex
	gates   map[string]*gate
	started chan string   // the token of every Block handler as it starts
	done    chan struct{} // closed at teardown: every Block handler returns

	inflight, maxInflight atomic.Int32
	stopOnce              sync.Once
}

func newService() *service {
	return &service{gates: map[string]*gate{}, started: make(chan string, 4096), done: make(chan struct{})}
}

// gate returns the gate of token, creating it.
func (s *service) gate(token string) *gate {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gates[token]
	if g == nil {
		g = &gate{started: make(chan struct{}), release: make(chan struct{}), observed: make(chan observation, 1)}
		s.gates[token] = g
	}
	return g
}

// open lets every Block call with token return.
func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (s *service) stop() { s.stopOnce.Do(func() { close(s.done) }) }

func (s *service) enter() func() {
	n := s.inflight.Add(1)
	for {
		m := s.maxInflight.Load()
		if n <= m || s.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { s.inflight.Add(-1) }
}

func (s *service) desc() *kernel.ServiceDesc {
	return kernel.NewService(svcName,
		kernel.Unary("Echo", func(_ context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
			return r, nil
		}),
		kernel.Unary("Grow", func(_ context.Context, r *wrapperspb.UInt32Value) (*wrapperspb.BytesValue, error) {
			if r.GetValue() > 64<<20 {
				return nil, status.Errorf(status.InvalidArgument, "%d bytes is too many", r.GetValue())
			}
			return wrapperspb.Bytes(bytes.Repeat([]byte{'g'}, int(r.GetValue()))), nil
		}),
		kernel.Unary("Block", func(ctx context.Context, r *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			defer s.enter()()
			g := s.gate(r.GetValue())
			var ob observation
			var dl time.Time
			if dl, ob.hasDeadline = ctx.Deadline(); ob.hasDeadline {
				ob.left = time.Until(dl)
			}
			g.startup.Do(func() { close(g.started) })
			s.started <- r.GetValue()
			defer func() {
				select {
				case g.observed <- ob:
				default:
				}
			}()
			select {
			case <-g.release:
				return r, nil
			case <-ctx.Done():
				ob.err = ctx.Err()
				return nil, ctx.Err()
			case <-s.done:
				return nil, status.New(status.Unavailable, "test over")
			}
		}),
		kernel.Unary("Panic", func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			panic("transporttest: the Panic handler panics on purpose")
		}),
	)
}
