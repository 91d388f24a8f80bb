package breaker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/plugins/breaker"
)

const m = "/t.S/M"

// call runs one attempt through the guard with result err and returns the
// admission error.
func call(g *breaker.Breakers, b *kernel.Backend, method string, err error) error {
	done, aerr := g.Admit(b, method)
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
	st := g.States()
	if len(st) != 2 || st[0].State != "open" || st[1].State != "closed" {
		t.Errorf("states: %+v", st)
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
	done, err := g.Admit(b, m)
	if err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	if _, err := g.Admit(b, m); status.CodeOf(err) != status.Unavailable {
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
