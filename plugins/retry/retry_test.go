package retry_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/plugins/retry"
)

const m = "/t.S/Get"

var spec = kernel.NewSpec(m, kernel.StreamTypeUnary, false)

// backend is a fake next invoker returning errs in turn (the last one
// repeats) and recording each attempt's retry flag.
type backend struct {
	errs  []error
	flags []string
}

func (b *backend) invoke(ctx context.Context, _ *kernel.Spec, _, _ any) error {
	b.flags = append(b.flags, metadata.FromOutgoingContext(ctx).Get(retry.AttemptKey))
	err := b.errs[min(len(b.flags)-1, len(b.errs)-1)]
	return err
}

func cfg(f func(*retry.Config)) retry.Config {
	c := retry.DefaultConfig()
	c.InitialBackoff, c.MaxBackoff = time.Microsecond, time.Millisecond
	c.IdempotentMethods = []string{m, "/t.Other/*"}
	if f != nil {
		f(&c)
	}
	return c
}

func TestWhenToRetry(t *testing.T) {
	unavailable := status.New(status.Unavailable, "down")
	for _, tc := range []struct {
		name     string
		method   string
		idem     bool // Spec.Idempotent
		ctx      func(context.Context) context.Context
		errs     []error
		attempts int
		code     status.Code
	}{
		{"idempotent, retryable code", m, false, nil, []error{unavailable}, 3, status.Unavailable},
		{"succeeds on the second attempt", m, false, nil, []error{unavailable, nil}, 2, status.OK},
		{"service wildcard", "/t.Other/Put", false, nil, []error{unavailable}, 3, status.Unavailable},
		{"not idempotent", "/t.S/Put", false, nil, []error{unavailable}, 1, status.Unavailable},
		{"idempotent by spec", "/t.S/Put", true, nil, []error{unavailable}, 3, status.Unavailable},
		{"marked idempotent by context", "/t.S/Put", false, retry.Idempotent, []error{unavailable}, 3, status.Unavailable},
		{"refused, not idempotent", "/t.S/Put", false, nil, []error{status.Refused("going away"), nil}, 2, status.OK},
		{"caller error", m, false, nil, []error{status.New(status.InvalidArgument, "bad")}, 1, status.InvalidArgument},
		{"serving a retry upstream", m, false, func(ctx context.Context) context.Context {
			return metadata.NewIncomingContext(ctx, metadata.New(retry.AttemptKey, "2"))
		}, []error{unavailable}, 1, status.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := retry.New(cfg(nil))
			b := &backend{errs: tc.errs}
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx(ctx)
			}
			err := r.Intercept(ctx, kernel.NewSpec(tc.method, kernel.StreamTypeUnary, tc.idem), nil, nil, b.invoke)
			if len(b.flags) != tc.attempts || status.CodeOf(err) != tc.code {
				t.Fatalf("attempts %d, err %v; want %d attempts, %v", len(b.flags), err, tc.attempts, tc.code)
			}
			for i, f := range b.flags {
				want := ""
				if i > 0 {
					want = string(rune('1' + i))
				}
				if f != want {
					t.Errorf("attempt %d carried %s=%q, want %q", i+1, retry.AttemptKey, f, want)
				}
			}
		})
	}
}

func TestBudgetBoundsAmplification(t *testing.T) {
	r := retry.New(cfg(func(c *retry.Config) { c.BudgetFloor = 0; c.MaxAttempts = 5 }))
	b := &backend{errs: []error{status.New(status.Unavailable, "down")}}
	const calls = 2000
	for range calls {
		r.Intercept(context.Background(), spec, nil, nil, b.invoke)
	}
	// Budget: 0.2 per call, plus the cap of 10*0.2 saved up at the start.
	if max := calls*1.2 + 2; float64(len(b.flags)) > max {
		t.Fatalf("%d attempts for %d calls, more than %v", len(b.flags), calls, max)
	}
	if len(b.flags) < calls*1.2-2 {
		t.Errorf("%d attempts for %d calls: the budget was not used", len(b.flags), calls)
	}
	st := r.State().(retry.Stats)
	if st.Calls != calls || st.Retries+calls != int64(len(b.flags)) || st.Denied == 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestPerAttemptTimeoutWithinDeadline(t *testing.T) {
	r := retry.New(cfg(func(c *retry.Config) { c.PerAttemptTimeout = 5 * time.Millisecond }))
	attempts := 0
	hang := func(ctx context.Context, _ *kernel.Spec, _, _ any) error {
		attempts++
		<-ctx.Done()
		return status.FromError(ctx.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := r.Intercept(ctx, spec, nil, nil, hang)
	if attempts != 3 || status.CodeOf(err) != status.DeadlineExceeded {
		t.Fatalf("attempts %d, err %v; want 3 attempts each timing out", attempts, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the caller's deadline passed")
	}
}

func TestConfigIsStrict(t *testing.T) {
	for _, tree := range []map[string]any{
		{"retryable_codes": []any{"SOMETIMES"}},
		{"idempotent_methods": []any{"Get"}},
		{"max_attempts": 0},
		{"initial_backoff": "2s", "max_backoff": "1s"},
		{"hedge": true},
	} {
		if _, err := retry.Factory.Build(kernel.BuildContext{}, config.Raw{Path: "client.interceptors[0].options", Tree: tree}); err == nil {
			t.Errorf("accepted %v", tree)
		}
	}
}

type msg struct{ V string }

func hedges(r *retry.Retrier) int64 { return r.State().(retry.Stats).Hedges }

func TestHedgeFirstSuccessWins(t *testing.T) {
	r := retry.New(cfg(func(c *retry.Config) { c.HedgeAfter = time.Millisecond }))
	cancelled := make(chan bool, 1)
	next := func(ctx context.Context, _ *kernel.Spec, _, resp any) error {
		if metadata.FromOutgoingContext(ctx).Get(retry.AttemptKey) == "" {
			<-ctx.Done() // the slow first attempt
			cancelled <- true
			return status.FromError(ctx.Err())
		}
		resp.(*msg).V = "backup"
		return nil
	}
	var out msg
	if err := r.Intercept(context.Background(), spec, nil, &out, next); err != nil {
		t.Fatal(err)
	}
	if h := hedges(r); out.V != "backup" || h != 1 {
		t.Fatalf("response %q, hedges %d", out.V, h)
	}
	select {
	case <-cancelled:
	default:
		t.Fatal("the losing attempt was not cancelled and waited for")
	}
	// Not idempotent: no backup.
	done := make(chan error, 1)
	go func() {
		done <- r.Intercept(context.Background(), kernel.NewSpec("/t.S/Put", kernel.StreamTypeUnary, false), nil, &out, func(ctx context.Context, _ *kernel.Spec, _, _ any) error { return nil })
	}()
	if err := <-done; err != nil || hedges(r) != 1 {
		t.Fatalf("non-idempotent call: %v, hedges %d", err, hedges(r))
	}
}

func TestHedgeBothFail(t *testing.T) {
	r := retry.New(cfg(func(c *retry.Config) { c.HedgeAfter = time.Millisecond; c.MaxAttempts = 1 }))
	release := make(chan struct{})
	next := func(ctx context.Context, _ *kernel.Spec, _, _ any) error {
		if metadata.FromOutgoingContext(ctx).Get(retry.AttemptKey) == "" {
			<-release
			return status.New(status.Unavailable, "first")
		}
		close(release)
		return status.New(status.Unavailable, "backup")
	}
	var out msg
	err := r.Intercept(context.Background(), spec, nil, &out, next)
	if status.CodeOf(err) != status.Unavailable || hedges(r) != 1 {
		t.Fatalf("err %v, hedges %d", err, hedges(r))
	}
}

func TestState(t *testing.T) {
	unavailable := status.New(status.Unavailable, "down")
	for _, tc := range []struct {
		name  string
		opts  map[string]any
		calls [][]error // each call's attempts' results (the last repeats)
		want  retry.Stats
	}{
		{"no calls", nil, nil, retry.Stats{Budget: retry.Budget{Available: 0, Cap: 2}}},
		{"successes fill the budget", nil, [][]error{{nil}, {nil}, {nil}},
			retry.Stats{Calls: 3, Budget: retry.Budget{Available: 0.6, Cap: 2}}},
		{"retries spend it", map[string]any{"budget_ratio": 1}, [][]error{{unavailable, nil}, {unavailable, unavailable, nil}},
			retry.Stats{Calls: 2, Retries: 2, Denied: 1, Budget: retry.Budget{Available: 0, Cap: 10}}},
		{"floor", map[string]any{"budget_ratio": 0, "budget_floor": 2}, [][]error{{unavailable}},
			retry.Stats{Calls: 1, Retries: 2, Budget: retry.Budget{Available: 0, Cap: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := map[string]any{"budget_floor": 0, "initial_backoff": "1us", "max_backoff": "1ms", "idempotent_methods": []any{m}}
			for k, v := range tc.opts {
				tree[k] = v
			}
			ic, err := retry.Factory.Build(kernel.BuildContext{}, config.Raw{Path: "client.interceptors[0].options", Tree: tree})
			if err != nil {
				t.Fatal(err)
			}
			r := ic.(kernel.Interceptor).Instance.(*retry.Retrier)
			for _, errs := range tc.calls {
				b := &backend{errs: errs}
				r.Intercept(context.Background(), spec, nil, nil, b.invoke)
			}
			got := r.State().(retry.Stats)
			// The floor refills over time: allow for what it added since.
			if tc.opts["budget_floor"] != nil && got.Budget.Available < 0.1 {
				got.Budget.Available = 0
			}
			if got != tc.want {
				t.Errorf("state %+v, want %+v", got, tc.want)
			}
			if _, err := json.Marshal(got); err != nil {
				t.Errorf("state does not encode as JSON: %v", err)
			}
		})
	}
}
