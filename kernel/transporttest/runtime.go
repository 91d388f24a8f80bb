package transporttest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/kerneltest"
)

// ServeConfig applies yaml, a whole Axon config, to a new kernel.Runtime
// whose catalog holds factories and which serves the suite's test service,
// and shuts the runtime down when the test ends (Shutdown may also be
// called before). It is for a transport's test that the listener block its
// README shows works in a runtime; call the runtime's endpoint with Echo.
func ServeConfig(t testing.TB, yaml string, factories ...kernel.Factory) *kernel.Runtime {
	t.Helper()
	cfg := kerneltest.Config(t, yaml)
	cat, err := kernel.NewCatalog(factories)
	if err != nil {
		t.Fatal(err)
	}
	svc := newService()
	t.Cleanup(svc.stop)
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc.desc()})
	if err != nil {
		t.Fatal(err)
	}
	rt := kernel.NewRuntime(cat, table, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rt.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := rt.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return rt
}

// Echo calls the test service's Echo method through c and fails the test
// unless payload comes back.
func Echo(t testing.TB, c *kernel.Client, payload string) {
	t.Helper()
	mustEcho(t, c, payload)
}

// BuildOptions builds a transport from f with opts as a listener's options
// block (listen[0].options). With wantErr empty it fails the test unless
// the build succeeds and gives a kernel.Transport; otherwise unless the
// build fails with an error containing wantErr (say, the path of the bad
// key).
func BuildOptions(t testing.TB, f kernel.Factory, opts map[string]any, wantErr string) {
	t.Helper()
	bc := kernel.BuildContext{Logger: slog.New(slog.DiscardHandler)}
	inst, err := f.Build(bc, config.Raw{Path: "listen[0].options", Tree: opts})
	if wantErr == "" {
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := inst.(kernel.Transport); !ok {
			t.Fatalf("built %T, not a kernel.Transport", inst)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("error %v, want one containing %q", err, wantErr)
	}
}
