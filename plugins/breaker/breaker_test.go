package breaker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/plugins/breaker"
)

const m = "/t.S/M"

var spec = kernel.NewSpec(m, kernel.StreamTypeUnary, false)

// call runs one attempt through the guard with result err and returns the
// admission error.
func call(g *breaker.Breakers, b *kernel.Backend, method string, err error) error {
	done, aerr := g.Admit(context.Background(), b, kernel.NewSpec(method, kernel.StreamTypeUnary, false))
	if aerr != nil {
		return aerr
	}
	done(err)
	return nil
}

func TestTripsOnConsecutiveFailuresAndFailsFast(t *testing.T) {
	c := breaker.DefaultConfig()
	c.ConsecutiveFailures = 3
	c.OpenFor = time.Hour
	g := breaker.New(c, nil)
	bad := kernel.NewBackend(kernel.Endpoint{Address: "tcp://10.0.0.1:1"}, 0)
	good := kernel.NewBackend(kernel.Endpoint{Address: "tcp://10.0.0.2:1"}, 0)
	for i := range 3 {
		if err := call(g, bad, m, status.New(status.Unavailable, "down")); err != nil {
			t.Fatalf("call %d refused before the breaker tripped: %v", i, err)
		}
	}
	err := call(g, bad, m, nil)
	if status.CodeOf(err) != status.Unavailable || !strings.Contains(err.Error(), "tcp://10.0.0.1:1 /t.S/M") || !strings.Contains(err.Error(), "probes again in") {
		t.Fatalf("open breaker: got %v, want UNAVAILABLE naming the breaker and its probe time", err)
	}
	if g.Available(bad, m) {
		t.Error("open breaker reported available")
	}
	if !g.Available(good, m) || !g.Available(bad, "/t.S/Other") {
		t.Error("the breakers of another endpoint or method are not independent")
	}
	if err := call(g, good, m, nil); err != nil {
		t.Errorf("healthy endpoint refused: %v", err)
	}
}

func TestCallerErrorsDoNotCount(t *testing.T) {
	c := breaker.DefaultConfig()
	c.ConsecutiveFailures = 2
	g := breaker.New(c, nil)
	b := kernel.NewBackend(kernel.Endpoint{Address: "a"}, 0)
	for range 10 {
		for _, err := range []error{status.New(status.InvalidArgument, "x"), status.New(status.NotFound, "x"), status.Refused("going away")} {
			if aerr := call(g, b, m, err); aerr != nil {
				t.Fatalf("breaker tripped on caller errors: %v", aerr)
			}
		}
	}
}

func TestHalfOpenProbeClosesOrReopens(t *testing.T) {
	c := breaker.DefaultConfig()
	c.ConsecutiveFailures = 1
	c.OpenFor = 20 * time.Millisecond
	g := breaker.New(c, nil)
	b := kernel.NewBackend(kernel.Endpoint{Address: "a"}, 0)
	fail := status.New(status.Internal, "boom")
	call(g, b, m, fail)
	if call(g, b, m, nil) == nil {
		t.Fatal("breaker did not open")
	}
	waitAvailable(t, g, b)
	// Half-open: one probe; a second concurrent call is refused.
	done, err := g.Admit(context.Background(), b, spec)
	if err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	if _, err := g.Admit(context.Background(), b, spec); status.CodeOf(err) != status.Unavailable {
		t.Errorf("second call while the probe is out: %v", err)
	}
	done(fail) // the probe fails: open again
	if call(g, b, m, nil) == nil {
		t.Fatal("failed probe did not reopen the breaker")
	}
	waitAvailable(t, g, b)
	if err := call(g, b, m, nil); err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	for range 5 {
		if err := call(g, b, m, nil); err != nil {
			t.Fatalf("closed breaker refused: %v", err)
		}
	}
}

func waitAvailable(t *testing.T, g *breaker.Breakers, b *kernel.Backend) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !g.Available(b, m) {
		if time.Now().After(deadline) {
			t.Fatal("breaker never became available")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFailureRatio(t *testing.T) {
	c := breaker.DefaultConfig()
	c.ConsecutiveFailures = 0
	c.FailureRatio = 0.5
	c.MinCalls = 10
	g := breaker.New(c, nil)
	b := kernel.NewBackend(kernel.Endpoint{Address: "a"}, 0)
	// Alternate: never two failures in a row, half of them failures.
	for i := range 10 {
		var err error
		if i%2 == 1 {
			err = status.New(status.Unavailable, "x")
		}
		if aerr := call(g, b, m, err); aerr != nil {
			t.Fatalf("tripped after %d calls, before min_calls", i)
		}
	}
	if call(g, b, m, nil) == nil {
		t.Fatal("ratio of 0.5 over 10 calls did not trip")
	}
}

func TestScopeEndpoint(t *testing.T) {
	c := breaker.DefaultConfig()
	c.Scope, c.ConsecutiveFailures = "endpoint", 1
	g := breaker.New(c, nil)
	b := kernel.NewBackend(kernel.Endpoint{Address: "a"}, 0)
	call(g, b, "/t.S/A", status.New(status.Unavailable, "x"))
	if g.Available(b, "/t.S/B") {
		t.Error("an endpoint-scoped breaker did not cover another method")
	}
}

func TestConfigIsStrict(t *testing.T) {
	for _, tree := range []map[string]any{
		{"failure_codes": []any{"NOPE"}},
		{"consecutive_failures": 0},
		{"scope": "host"},
		{"open_after": 3},
	} {
		if _, err := breaker.Factory.Build(kernel.BuildContext{}, config.Raw{Path: "client.interceptors[0].options", Tree: tree}); err == nil {
			t.Errorf("accepted %v", tree)
		}
	}
}

func TestState(t *testing.T) {
	unavailable := status.New(status.Unavailable, "down")
	type result struct {
		addr, method string
		err          error
	}
	for _, tc := range []struct {
		name  string
		scope string
		calls []result
		want  []breaker.State // ProbesAt is checked for being set when open
	}{
		{"no calls", "endpoint_method", nil, []breaker.State{}},
		{"endpoint and method", "endpoint_method", []result{
			{"b", m, nil},
			{"a", m, unavailable},
			{"a", m, unavailable},
			{"a", "/t.S/N", status.New(status.NotFound, "x")},
			{"a", m, nil}, // refused: the breaker is open
		}, []breaker.State{
			{Endpoint: "a", Method: m, State: "open", Changes: 1},
			{Endpoint: "a", Method: "/t.S/N", State: "closed", Counts: breaker.Counts{Requests: 1, Successes: 1, ConsecutiveSuccesses: 1}},
			{Endpoint: "b", Method: m, State: "closed", Counts: breaker.Counts{Requests: 1, Successes: 1, ConsecutiveSuccesses: 1}},
		}},
		{"endpoint", "endpoint", []result{
			{"a", "/t.S/A", unavailable},
			{"a", "/t.S/B", nil},
		}, []breaker.State{
			{Endpoint: "a", State: "closed", Counts: breaker.Counts{Requests: 2, Successes: 1, Failures: 1, ConsecutiveSuccesses: 1}},
		}},
		{"method", "method", []result{
			{"a", m, unavailable},
			{"b", m, unavailable},
		}, []breaker.State{
			{Method: m, State: "open", Changes: 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ic, err := breaker.Factory.Build(kernel.BuildContext{}, config.Raw{Path: "client.interceptors[0].options",
				Tree: map[string]any{"scope": tc.scope, "consecutive_failures": 2, "open_for": "1h"}})
			if err != nil {
				t.Fatal(err)
			}
			g := ic.(kernel.Interceptor).Instance.(*breaker.Breakers)
			backends := map[string]*kernel.Backend{}
			for _, c := range tc.calls {
				if backends[c.addr] == nil {
					backends[c.addr] = kernel.NewBackend(kernel.Endpoint{Address: c.addr}, 0)
				}
				call(g, backends[c.addr], c.method, c.err)
			}
			got := g.State().([]breaker.State)
			if len(got) != len(tc.want) {
				t.Fatalf("state %+v, want %+v", got, tc.want)
			}
			for i, s := range got {
				if s.State == "open" == s.ProbesAt.IsZero() {
					t.Errorf("%s %s is %s with probes_at %v", s.Endpoint, s.Method, s.State, s.ProbesAt)
				}
				s.ProbesAt = time.Time{}
				if s != tc.want[i] {
					t.Errorf("state[%d] = %+v, want %+v", i, s, tc.want[i])
				}
			}
			if _, err := json.Marshal(got); err != nil {
				t.Errorf("state does not encode as JSON: %v", err)
			}
		})
	}
}
