package ratelimit_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/plugins/ratelimit"
)

func callCtx(method string) (context.Context, *kernel.ServerCall) {
	c := &kernel.ServerCall{Method: &kernel.MethodDesc{FullName: method}}
	return kernel.NewCallContext(context.Background(), c), c
}

func ok(context.Context, any) (any, error) { return "ok", nil }

func TestRateWithBurst(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Scope: "method", RPS: 0.001, Burst: 3,
		Limits: map[string]ratelimit.Limit{"/t.S/Free": {}}})
	for i := range 3 {
		ctx, _ := callCtx("/t.S/M")
		if _, err := l.Unary(ctx, nil, ok); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	ctx, call := callCtx("/t.S/M")
	_, err := l.Unary(ctx, nil, func(context.Context, any) (any, error) {
		t.Fatal("handler ran over the limit")
		return nil, nil
	})
	if status.CodeOf(err) != status.ResourceExhausted {
		t.Fatalf("over the limit: %v", err)
	}
	if call.Trailer.Get(ratelimit.RetryAfterKey) == "" {
		t.Errorf("no %s hint in the trailer: %v", ratelimit.RetryAfterKey, call.Trailer)
	}
	// Another method has its own bucket; an override without limits has none.
	for range 10 {
		ctx, _ := callCtx("/t.S/Free")
		if _, err := l.Unary(ctx, nil, ok); err != nil {
			t.Fatalf("unlimited method: %v", err)
		}
	}
	ctx, _ = callCtx("/t.S/Other")
	if _, err := l.Unary(ctx, nil, ok); err != nil {
		t.Fatalf("another method shares the bucket: %v", err)
	}
	if n := l.State().(ratelimit.State).Rejected; n != 1 {
		t.Errorf("rejected %d, want 1", n)
	}
}

func TestServiceScopeSharesABucket(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Scope: "service", Limits: map[string]ratelimit.Limit{"t.S": {RPS: 0.001, Burst: 2}}})
	for _, m := range []string{"/t.S/A", "/t.S/B"} {
		ctx, _ := callCtx(m)
		if _, err := l.Unary(ctx, nil, ok); err != nil {
			t.Fatal(err)
		}
	}
	ctx, _ := callCtx("/t.S/C")
	if _, err := l.Unary(ctx, nil, ok); status.CodeOf(err) != status.ResourceExhausted {
		t.Fatalf("third call of the service: %v", err)
	}
	ctx, _ = callCtx("/t.U/A")
	if _, err := l.Unary(ctx, nil, ok); err != nil {
		t.Fatalf("another service (default: no limit): %v", err)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Scope: "server", MaxConcurrent: 2})
	entered, release := make(chan struct{}), make(chan struct{})
	block := func(context.Context, any) (any, error) { entered <- struct{}{}; <-release; return nil, nil }
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			ctx, _ := callCtx("/t.S/M")
			_, err := l.Unary(ctx, nil, block)
			errs <- err
		}()
		<-entered
	}
	ctx, _ := callCtx("/t.S/N")
	if _, err := l.Unary(ctx, nil, ok); status.CodeOf(err) != status.ResourceExhausted {
		t.Fatalf("third concurrent call: %v", err)
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Unary(ctx, nil, ok); err != nil {
		t.Fatalf("after the calls ended: %v", err)
	}
}

func TestConfigIsStrict(t *testing.T) {
	for _, tree := range []map[string]any{
		{"limits": map[string]any{"Svc": map[string]any{"rps": 1}}},
		{"scope": "service", "limits": map[string]any{"/a.B/C": map[string]any{"rps": 1}}},
		{"rps": -1},
		{"qps": 1},
	} {
		if _, err := ratelimit.Factory.Build(kernel.BuildContext{}, config.Raw{Path: "server.interceptors[0].options", Tree: tree}); err == nil {
			t.Errorf("accepted %v", tree)
		}
	}
}

func TestState(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tree  map[string]any
		calls []string
		want  ratelimit.State
	}{
		{"defaults", nil, []string{"/t.S/M", "/t.S/M"}, ratelimit.State{Scope: "method"}},
		{"per method", map[string]any{"rps": 0.001, "burst": 2, "limits": map[string]any{"/t.S/Free": map[string]any{"max_concurrent": 5}}},
			[]string{"/t.S/M", "/t.S/M", "/t.S/M", "/t.S/Free", "/t.S/M", "/t.S/N"},
			ratelimit.State{Scope: "method", Default: ratelimit.Limit{RPS: 0.001, Burst: 2},
				Limits: map[string]ratelimit.Limit{"/t.S/Free": {MaxConcurrent: 5}}, Rejected: 2}},
		{"per server", map[string]any{"scope": "server", "rps": 0.001, "max_concurrent": 10},
			[]string{"/t.S/M", "/t.U/M", "/t.S/N"},
			ratelimit.State{Scope: "server", Default: ratelimit.Limit{RPS: 0.001, MaxConcurrent: 10}, Rejected: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ic, err := ratelimit.Factory.Build(kernel.BuildContext{}, config.Raw{Path: "server.interceptors[0].options", Tree: tc.tree})
			if err != nil {
				t.Fatal(err)
			}
			l := ic.(kernel.Interceptor).Instance.(*ratelimit.Limiter)
			for _, m := range tc.calls {
				ctx, _ := callCtx(m)
				l.Unary(ctx, nil, ok)
			}
			got := l.State().(ratelimit.State)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("state %+v, want %+v", got, tc.want)
			}
			if _, err := json.Marshal(got); err != nil {
				t.Errorf("state does not encode as JSON: %v", err)
			}
		})
	}
}
