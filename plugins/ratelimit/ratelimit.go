package ratelimit

import (
	"context"
	"maps"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// RetryAfterKey is the trailer key of the hint: milliseconds until the
// limit lets a call through again.
const RetryAfterKey = "axon-retry-after-ms"

// Limiter is the rate limiter's instance, and a kernel.Publisher of its
// State; safe for concurrent use.
type Limiter struct {
	cfg Config

	mu      sync.RWMutex
	buckets map[string]*bucket

	rejected atomic.Int64
}

type bucket struct {
	name  string
	limit Limit
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time

	inflight atomic.Int64
}

// New returns a limiter configured by c.
func New(c Config) *Limiter {
	c.Limits = maps.Clone(c.Limits)
	return &Limiter{cfg: c, buckets: map[string]*bucket{}}
}

// State is what the live view shows of a limiter (see Limiter.State): its
// settings and the calls it refused.
type State struct {
	Scope string `json:"scope"`
	// Default is the limits of every key without an entry in Limits.
	Default Limit            `json:"default"`
	Limits  map[string]Limit `json:"limits,omitempty"`
	// Rejected counts the calls refused, over a rate or a concurrency cap.
	Rejected int64 `json:"rejected"`
}

// State implements kernel.Publisher.
func (l *Limiter) State() any {
	return State{
		Scope:    l.cfg.Scope,
		Default:  Limit{RPS: l.cfg.RPS, Burst: l.cfg.Burst, MaxConcurrent: l.cfg.MaxConcurrent},
		Limits:   l.cfg.Limits, // cloned by New and never modified
		Rejected: l.rejected.Load(),
	}
}

func (l *Limiter) bucketFor(method string) *bucket {
	k := method
	switch l.cfg.Scope {
	case "service":
		k = strings.TrimPrefix(method, "/")
		if i := strings.IndexByte(k, '/'); i >= 0 {
			k = k[:i]
		}
	case "server":
		k = ""
	}
	l.mu.RLock()
	b := l.buckets[k]
	l.mu.RUnlock()
	if b != nil {
		return b
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b = l.buckets[k]; b != nil {
		return b
	}
	lim, ok := l.cfg.Limits[k]
	if !ok {
		lim = Limit{RPS: l.cfg.RPS, Burst: l.cfg.Burst, MaxConcurrent: l.cfg.MaxConcurrent}
	}
	burst := float64(lim.Burst)
	if burst == 0 {
		burst = max(math.Ceil(lim.RPS), 1)
	}
	b = &bucket{name: k, limit: lim, burst: burst, tokens: burst, last: time.Now()}
	if k == "" {
		b.name = "server"
	}
	l.buckets[k] = b
	return b
}

// take admits a call or returns RESOURCE_EXHAUSTED with the wait until the
// next token; release must be called when an admitted call ends.
func (b *bucket) take() (wait time.Duration, err error) {
	if b.limit.MaxConcurrent > 0 {
		if n := b.inflight.Add(1); n > int64(b.limit.MaxConcurrent) {
			b.inflight.Add(-1)
			return 0, status.Errorf(status.ResourceExhausted, "ratelimit: %s has %d calls in progress, the limit", b.name, b.limit.MaxConcurrent)
		}
	}
	if b.limit.RPS > 0 {
		b.mu.Lock()
		now := time.Now()
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.limit.RPS)
		b.last = now
		if b.tokens < 1 {
			wait = time.Duration((1 - b.tokens) / b.limit.RPS * float64(time.Second))
			b.mu.Unlock()
			b.release()
			return wait, status.Errorf(status.ResourceExhausted, "ratelimit: %s is over its rate of %g calls per second; retry in %v", b.name, b.limit.RPS, wait.Round(time.Millisecond))
		}
		b.tokens--
		b.mu.Unlock()
	}
	return 0, nil
}

func (b *bucket) release() {
	if b.limit.MaxConcurrent > 0 {
		b.inflight.Add(-1)
	}
}

func (l *Limiter) reject(ctx context.Context, wait time.Duration, err error) error {
	l.rejected.Add(1)
	ms := max(wait.Milliseconds(), 1)
	kernel.SetTrailer(ctx, metadata.New(RetryAfterKey, strconv.FormatInt(ms, 10)))
	return err
}

// Unary is the unary server interceptor.
func (l *Limiter) Unary(ctx context.Context, req any, next kernel.UnaryHandler) (any, error) {
	c := kernel.CallFromContext(ctx)
	if c == nil {
		return next(ctx, req)
	}
	b := l.bucketFor(c.Method.FullName)
	if wait, err := b.take(); err != nil {
		return nil, l.reject(ctx, wait, err)
	}
	defer b.release()
	return next(ctx, req)
}

// Stream is the stream server interceptor: a stream counts as one call
// while it lasts.
func (l *Limiter) Stream(s kernel.ServerStream, next kernel.StreamHandler) error {
	c := kernel.CallFromContext(s.Context())
	if c == nil {
		return next(s)
	}
	b := l.bucketFor(c.Method.FullName)
	if wait, err := b.take(); err != nil {
		return l.reject(s.Context(), wait, err)
	}
	defer b.release()
	return next(s)
}
