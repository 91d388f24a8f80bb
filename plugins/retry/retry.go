package retry

import (
	"context"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// AttemptKey is the metadata key that marks a retry: its value is the
// attempt's number (2 for the first retry).
const AttemptKey = "axon-retry-attempt"

type idempotentKey struct{}

// Idempotent returns ctx marking the calls made with it as safe to retry
// after they may have run.
func Idempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

// Retrier is the retry interceptor's instance, and a kernel.Publisher of
// its Stats. It is safe for concurrent use.
type Retrier struct {
	cfg       Config
	retryable [status.Unauthenticated + 1]bool
	methods   map[string]bool // full names and "/pkg.Service/" prefixes

	budget budget

	// Counters, for the live view.
	calls, retries, denied, hedges atomic.Int64
}

// New returns a retrier configured by c.
func New(c Config) *Retrier {
	r := &Retrier{cfg: c, methods: map[string]bool{}}
	for _, name := range c.RetryableCodes {
		code, _ := status.ParseCode(name)
		r.retryable[code] = true
	}
	for _, m := range c.IdempotentMethods {
		r.methods[strings.TrimSuffix(m, "*")] = true
	}
	r.budget.init(c.BudgetRatio, c.BudgetFloor)
	return r
}

// Stats is what the live view shows of a retrier (see Retrier.State).
type Stats struct {
	// Calls counts the calls seen, Retries the retries sent, Hedges the
	// backup attempts sent, and Denied the retries and backup attempts
	// the budget refused.
	Calls   int64 `json:"calls"`
	Retries int64 `json:"retries"`
	Hedges  int64 `json:"hedges"`
	Denied  int64 `json:"denied"`
	// Budget is the retry budget's balance and cap, in retries.
	Budget Budget `json:"budget"`
}

// Budget is the state of a retry budget, in retries.
type Budget struct {
	Available float64 `json:"available"`
	Cap       float64 `json:"cap"`
}

// State implements kernel.Publisher: the retrier's Stats.
func (r *Retrier) State() any {
	r.budget.refillNow()
	return Stats{
		Calls:   r.calls.Load(),
		Retries: r.retries.Load(),
		Hedges:  r.hedges.Load(),
		Denied:  r.denied.Load(),
		Budget:  Budget{Available: float64(r.budget.balance.Load()) / 1000, Cap: float64(r.budget.cap) / 1000},
	}
}

func (r *Retrier) idempotent(ctx context.Context, spec *kernel.Spec) bool {
	if spec.Idempotent {
		return true
	}
	method := spec.FullMethod
	if len(r.methods) > 0 {
		if r.methods[method] {
			return true
		}
		if i := strings.LastIndexByte(method, '/'); i > 0 && r.methods[method[:i+1]] {
			return true
		}
	}
	v, _ := ctx.Value(idempotentKey{}).(bool)
	return v
}

// Intercept is the unary client interceptor.
func (r *Retrier) Intercept(ctx context.Context, spec *kernel.Spec, req, resp any, next kernel.UnaryInvoker) error {
	r.calls.Add(1)
	r.budget.deposit()
	if (r.cfg.MaxAttempts <= 1 && r.cfg.HedgeAfter <= 0) || metadata.FromIncomingContext(ctx).Get(AttemptKey) != "" {
		// The handler making this call serves a retry: the caller upstream
		// retries already, so this hop does not multiply its attempts.
		return next(ctx, spec, req, resp)
	}
	idem := r.idempotent(ctx, spec)
	var err error
	for attempt := 1; ; attempt++ {
		actx := ctx
		if attempt > 1 {
			actx = metadata.AppendToOutgoingContext(ctx, AttemptKey, strconv.Itoa(attempt))
		}
		if idem && r.cfg.HedgeAfter > 0 {
			err = r.hedged(actx, attempt, spec, req, resp, next)
		} else {
			err = r.attempt(actx, spec, req, resp, next)
		}
		if err == nil || attempt >= r.cfg.MaxAttempts || ctx.Err() != nil || !r.shouldRetry(ctx, err, idem) {
			return err
		}
		if !r.budget.withdraw() {
			r.denied.Add(1)
			return err
		}
		if !r.backoff(ctx, attempt) {
			return err
		}
		r.retries.Add(1)
	}
}

func (r *Retrier) attempt(ctx context.Context, spec *kernel.Spec, req, resp any, next kernel.UnaryInvoker) error {
	if r.cfg.PerAttemptTimeout <= 0 {
		return next(ctx, spec, req, resp)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= r.cfg.PerAttemptTimeout {
		return next(ctx, spec, req, resp)
	}
	actx, cancel := context.WithTimeout(ctx, r.cfg.PerAttemptTimeout)
	defer cancel()
	return next(actx, spec, req, resp)
}

// shouldRetry reports whether a failed attempt may be sent again: a refusal
// always may (the server never ran it); other errors only for idempotent
// calls with a retryable code, or an attempt's own timeout.
func (r *Retrier) shouldRetry(ctx context.Context, err error, idem bool) bool {
	if status.IsRefused(err) {
		return true
	}
	if !idem {
		return false
	}
	c := status.CodeOf(err)
	if c == status.DeadlineExceeded && r.cfg.PerAttemptTimeout > 0 && ctx.Err() == nil {
		return true
	}
	return int(c) < len(r.retryable) && r.retryable[c]
}

// backoff waits before retry number attempt (1 for the first), with
// jitter; false when the caller's deadline would pass first.
func (r *Retrier) backoff(ctx context.Context, attempt int) bool {
	d := float64(r.cfg.InitialBackoff)
	for range attempt - 1 {
		d *= r.cfg.Multiplier
	}
	d = min(d, float64(r.cfg.MaxBackoff))
	d -= d * r.cfg.Jitter * rand.Float64()
	wait := time.Duration(d)
	if wait <= 0 {
		return true
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// budget is a token bucket in thousandths of a retry: each call deposits
// ratio, each retry withdraws one, and floor retries per second are added
// over time. The balance is capped at floor plus ratio times 10, so a long
// healthy spell does not save up a retry storm.
type budget struct {
	ratio, cap int64 // milli-tokens
	floor      int64 // milli-tokens per second
	balance    atomic.Int64

	mu     sync.Mutex
	refill time.Time
}

func (b *budget) init(ratio float64, floor int) {
	b.ratio = int64(ratio * 1000)
	b.floor = int64(floor) * 1000
	b.cap = b.floor + 10*b.ratio
	b.balance.Store(b.floor)
	b.refill = time.Now()
}

func (b *budget) deposit() {
	if b.ratio == 0 {
		return
	}
	for {
		v := b.balance.Load()
		if v >= b.cap {
			return
		}
		if b.balance.CompareAndSwap(v, min(v+b.ratio, b.cap)) {
			return
		}
	}
}

// refillNow adds the floor's retries for the time since the last refill.
func (b *budget) refillNow() {
	if b.floor == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if add := int64(now.Sub(b.refill).Seconds() * float64(b.floor)); add > 0 {
		b.refill = now
		for {
			v := b.balance.Load()
			if b.balance.CompareAndSwap(v, min(v+add, max(v, b.cap))) {
				break
			}
		}
	}
}

func (b *budget) withdraw() bool {
	b.refillNow()
	for {
		v := b.balance.Load()
		if v < 1000 {
			return false
		}
		if b.balance.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}

// hedged sends an attempt, and a backup attempt when the first has not
// answered after HedgeAfter and the budget allows one. The first success
// wins: its response (and header and trailer) become the call's, and the
// other attempt is cancelled and waited for. When both fail the last error
// is returned. Each attempt decodes into its own message, so they never
// write to the same memory.
func (r *Retrier) hedged(ctx context.Context, attempt int, spec *kernel.Spec, req, resp any, next kernel.UnaryInvoker) error {
	rt := reflect.TypeOf(resp)
	if rt == nil || rt.Kind() != reflect.Pointer {
		return r.attempt(ctx, spec, req, resp, next)
	}
	type result struct {
		err      error
		resp     any
		hdr, trl metadata.MD
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan *result, 2)
	launch := func(actx context.Context) {
		res := &result{resp: reflect.New(rt.Elem()).Interface()}
		actx = kernel.WithCallOptions(actx, kernel.Header(&res.hdr), kernel.Trailer(&res.trl))
		go func() {
			res.err = r.attempt(actx, spec, req, res.resp, next)
			results <- res
		}()
	}
	launch(hctx)
	running, done := 1, 0
	t := time.NewTimer(r.cfg.HedgeAfter)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if done > 0 || running > 1 {
				continue
			}
			if !r.budget.withdraw() {
				r.denied.Add(1)
				continue
			}
			r.hedges.Add(1)
			running++
			launch(metadata.AppendToOutgoingContext(hctx, AttemptKey, strconv.Itoa(attempt+1)))
		case res := <-results:
			done++
			if res.err != nil && done < running {
				continue // the other attempt may still succeed
			}
			if res.err != nil && running == 1 {
				return res.err // failed before a backup was sent: retry as usual
			}
			cancel()
			for ; done < running; done++ {
				<-results
			}
			if res.err != nil {
				return res.err
			}
			copyMessage(resp, res.resp)
			hdr, trl := kernel.ResponseMetadata(ctx)
			if hdr != nil {
				*hdr = res.hdr
			}
			if trl != nil {
				*trl = res.trl
			}
			return nil
		}
	}
}

// copyMessage makes dst (a pointer) hold the message src (of the same
// type) holds.
func copyMessage(dst, src any) {
	if d, ok := dst.(proto.Message); ok {
		proto.Reset(d)
		proto.Merge(d, src.(proto.Message))
		return
	}
	reflect.ValueOf(dst).Elem().Set(reflect.ValueOf(src).Elem())
}
