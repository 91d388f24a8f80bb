package app_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/app"
	"github.com/axonrpc/axon/examples/echo"
)

// hookEnv makes the test binary run `axon serve` with hookModule instead of
// the tests (see TestMain).
const hookEnv = "APP_TEST_SERVE_WITH_HOOKS" // not AXON_: that prefix overrides config keys

// hookModule is a process-lifetime plugin with fx lifecycle hooks, as an
// OpenTelemetry provider would have: it reports when they run.
var hookModule = fx.Invoke(func(lc fx.Lifecycle) {
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error { fmt.Fprintln(os.Stderr, "hook: OnStart ran"); return nil },
		OnStop:  func(context.Context) error { fmt.Fprintln(os.Stderr, "hook: OnStop ran"); return nil },
	})
})

func TestMain(m *testing.M) {
	if os.Getenv(hookEnv) == "1" {
		os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr, echo.Module, hookModule))
	}
	os.Exit(m.Run())
}

// TestServeRunsLifecycleHooks: `axon serve` starts the fx app before the
// first generation (OnStart before the listening line) and stops it on
// SIGTERM after the last generation drained (OnStop after "stopped").
func TestServeRunsLifecycleHooks(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "axon.yaml")
	writeConfig(t, cfg, freePort(t), "")
	logs := newSyncBuffer()
	srv := exec.Command(os.Args[0], "serve", "--config", cfg, "--watch=false")
	srv.Env = append(os.Environ(), hookEnv+"=1")
	srv.Stderr = logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() { srv.Process.Kill() })
	waitFor(t, "the listening log line", func() bool { return strings.Contains(logs.String(), "msg=listening") })
	if strings.Contains(logs.String(), "OnStop") {
		t.Fatalf("OnStop ran before SIGTERM:\n%s", logs.String())
	}
	srv.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v; logs:\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM; logs:\n%s", logs.String())
	}
	out := logs.String()
	order := []string{"hook: OnStart ran", "msg=listening", "msg=stopped", "hook: OnStop ran"}
	at := -1
	for _, s := range order {
		i := strings.Index(out, s)
		if i < 0 || i < at {
			t.Fatalf("want %q in this order; logs:\n%s", order, out)
		}
		at = i
	}
	if n := strings.Count(out, "hook: OnStop ran"); n != 1 {
		t.Fatalf("OnStop ran %d times; logs:\n%s", n, out)
	}
}
