package breaker

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
)

// Breakers is the breaker plugin's instance: a kernel.Guard holding one
// circuit breaker per scope key, created on first use, and a
// kernel.Publisher of their states. It is safe for concurrent use.
type Breakers struct {
	cfg      Config
	log      *slog.Logger
	failures [status.Unauthenticated + 1]bool

	mu  sync.RWMutex
	all map[key]*entry

	notClosed atomic.Int32 // breakers open or half-open: Available is free while 0
}

type key struct{ endpoint, method string }

type entry struct {
	key
	name      string
	cb        *gobreaker.TwoStepCircuitBreaker[struct{}]
	state     atomic.Int32 // gobreaker.State
	openUntil atomic.Int64 // unix ns when an open breaker lets probes through
	changes   atomic.Int64
}

// State is a snapshot of one breaker, as the live view shows it (see
// Breakers.State).
type State struct {
	// Endpoint and Method are what the breaker covers; one is empty when
	// the scope is "method" or "endpoint".
	Endpoint string `json:"endpoint,omitempty"`
	Method   string `json:"method,omitempty"`
	// State is "closed", "open" or "half-open".
	State string `json:"state"`
	// Changes counts the state changes since the breaker was created.
	Changes int64 `json:"changes"`
	// ProbesAt is when an open breaker lets probes through; zero when it
	// is not open.
	ProbesAt time.Time `json:"probes_at,omitzero"`
	Counts   Counts    `json:"counts"`
}

// Counts are a breaker's counts in its current interval (closed) or since
// it turned half-open.
type Counts struct {
	Requests             uint32 `json:"requests"`
	Successes            uint32 `json:"successes"`
	Failures             uint32 `json:"failures"`
	ConsecutiveSuccesses uint32 `json:"consecutive_successes"`
	ConsecutiveFailures  uint32 `json:"consecutive_failures"`
}

// New returns breakers configured by cfg, logging state changes to log.
func New(cfg Config, log *slog.Logger) *Breakers {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Breakers{cfg: cfg, log: log, all: map[key]*entry{}}
	for _, name := range cfg.FailureCodes {
		c, _ := status.ParseCode(name)
		b.failures[c] = true
	}
	return b
}

// failure reports whether err counts against a breaker. A call the server
// refused without running it says nothing about the endpoint's health.
func (b *Breakers) failure(err error) bool {
	if err == nil || status.IsRefused(err) {
		return false
	}
	c := status.CodeOf(err)
	return int(c) < len(b.failures) && b.failures[c]
}

func (b *Breakers) keyOf(be *kernel.Backend, method string) key {
	switch b.cfg.Scope {
	case "endpoint":
		return key{endpoint: be.Address()}
	case "method":
		return key{method: method}
	}
	return key{be.Address(), method}
}

func (b *Breakers) get(be *kernel.Backend, method string) *entry {
	k := b.keyOf(be, method)
	b.mu.RLock()
	e := b.all[k]
	b.mu.RUnlock()
	if e != nil {
		return e
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e = b.all[k]; e != nil {
		return e
	}
	e = &entry{key: k, name: k.endpoint + k.method}
	if k.endpoint != "" && k.method != "" {
		e.name = k.endpoint + " " + k.method
	}
	cfg := b.cfg
	e.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        e.name,
		MaxRequests: uint32(cfg.HalfOpenProbes),
		Interval:    cfg.Interval,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if cfg.ConsecutiveFailures > 0 && c.ConsecutiveFailures >= uint32(cfg.ConsecutiveFailures) {
				return true
			}
			return cfg.FailureRatio > 0 && c.Requests >= uint32(cfg.MinCalls) &&
				float64(c.TotalFailures) >= cfg.FailureRatio*float64(c.Requests)
		},
		IsSuccessful: func(err error) bool { return !b.failure(err) },
		// A call that was never sent (done(nil) after another guard
		// refused it) counts as a success: it cannot hide a failure, since
		// only sent calls fail.
		OnStateChange: func(name string, from, to gobreaker.State) { b.changed(e, from, to) },
	})
	b.all[k] = e
	return e
}

// changed runs under the breaker's own lock.
func (b *Breakers) changed(e *entry, from, to gobreaker.State) {
	if from == gobreaker.StateClosed {
		b.notClosed.Add(1)
	}
	if to == gobreaker.StateClosed {
		b.notClosed.Add(-1)
	}
	if to == gobreaker.StateOpen {
		e.openUntil.Store(time.Now().Add(b.cfg.OpenFor).UnixNano())
	}
	e.state.Store(int32(to))
	e.changes.Add(1)
	level := slog.LevelInfo
	if to == gobreaker.StateOpen {
		level = slog.LevelWarn
	}
	args := []any{"breaker", e.name, "from", from.String(), "to", to.String()}
	if to == gobreaker.StateOpen {
		args = append(args, "probes_in", b.cfg.OpenFor)
	}
	b.log.Log(context.Background(), level, "breaker state changed", args...)
}

// Admit implements kernel.Guard: an open breaker (or a half-open one whose
// probes are all out) fails the call at once with UNAVAILABLE naming the
// breaker and when it probes again.
func (b *Breakers) Admit(_ context.Context, be *kernel.Backend, spec *kernel.Spec) (func(error), error) {
	e := b.get(be, spec.FullMethod)
	done, err := e.cb.Allow()
	if err == nil {
		return done, nil
	}
	if errors.Is(err, gobreaker.ErrTooManyRequests) {
		return nil, status.Errorf(status.Unavailable, "circuit breaker %s is half-open and its %d probe call(s) are in flight", e.name, b.cfg.HalfOpenProbes)
	}
	left := time.Until(time.Unix(0, e.openUntil.Load())).Round(time.Millisecond)
	return nil, status.Errorf(status.Unavailable, "circuit breaker %s is open; it probes again in %v", e.name, max(left, 0))
}

// Available implements kernel.Guard: false while the breaker is open, or
// half-open with its probes out.
func (b *Breakers) Available(be *kernel.Backend, method string) bool {
	if b.notClosed.Load() == 0 {
		return true
	}
	b.mu.RLock()
	e := b.all[b.keyOf(be, method)]
	b.mu.RUnlock()
	if e == nil {
		return true
	}
	switch gobreaker.State(e.state.Load()) {
	case gobreaker.StateOpen:
		return time.Now().UnixNano() >= e.openUntil.Load()
	case gobreaker.StateHalfOpen:
		return e.cb.Counts().Requests < uint32(b.cfg.HalfOpenProbes)
	}
	return true
}

// State implements kernel.Publisher: a []State of every breaker, sorted by
// endpoint, then method.
func (b *Breakers) State() any {
	b.mu.RLock()
	entries := make([]*entry, 0, len(b.all))
	for _, e := range b.all {
		entries = append(entries, e)
	}
	b.mu.RUnlock()
	out := make([]State, 0, len(entries))
	for _, e := range entries {
		st := e.cb.State()
		c := e.cb.Counts()
		s := State{
			Endpoint: e.endpoint,
			Method:   e.method,
			State:    st.String(),
			Changes:  e.changes.Load(),
			Counts: Counts{
				Requests:             c.Requests,
				Successes:            c.TotalSuccesses,
				Failures:             c.TotalFailures,
				ConsecutiveSuccesses: c.ConsecutiveSuccesses,
				ConsecutiveFailures:  c.ConsecutiveFailures,
			},
		}
		if st == gobreaker.StateOpen {
			s.ProbesAt = time.Unix(0, e.openUntil.Load())
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Endpoint != out[j].Endpoint {
			return out[i].Endpoint < out[j].Endpoint
		}
		return out[i].Method < out[j].Method
	})
	return out
}
