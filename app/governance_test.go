package app_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestGovernanceConfig runs configs/governance.yaml (on free ports) with the
// real binary: the server starts with every governance plugin, axon call
// goes through the client chain (retry, breaker, routing rules, weighted
// balancing, an instance that is down), and the server's rate limit answers
// RESOURCE_EXHAUSTED once a burst is spent.
func TestGovernanceConfig(t *testing.T) {
	text, err := os.ReadFile("../configs/governance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(text)
	for _, p := range []string{"7451", "7452", "7453", "7459"} {
		cfg = strings.ReplaceAll(cfg, "127.0.0.1:"+p, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	}
	path := filepath.Join(t.TempDir(), "governance.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := axonBin(t)
	logs := newSyncBuffer()
	srv := exec.Command(bin, "serve", "--config", path, "--watch=false")
	srv.Stdout, srv.Stderr = logs, logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	}()
	waitFor(t, "the server to run", func() bool { return strings.Contains(logs.String(), "generation running") })

	call := func() result {
		return run(t, bin, "call", "--config", path, "axon.example.v1.Echo/Say", `{"text":"hi"}`)
	}
	first := call()
	if first.code != 0 || !strings.Contains(first.stdout, `"hi"`) {
		t.Fatalf("first call: exit %d\n%s%s\nserver:\n%s", first.code, first.stdout, first.stderr, logs.String())
	}
	// Burst 3, one call per 5s: within a few more calls one is limited.
	for range 10 {
		r := call()
		if r.code == 0 {
			continue
		}
		if !strings.Contains(r.stderr, "RESOURCE_EXHAUSTED") || !strings.Contains(r.stderr, "retry in") {
			t.Fatalf("limited call: exit %d\n%s", r.code, r.stderr)
		}
		return
	}
	t.Fatal("no call was rate limited")
}
