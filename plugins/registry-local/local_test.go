package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	local "github.com/axonrpc/axon/plugins/registry-local"
)

func newRegistry(t *testing.T, dir string) *local.Registry {
	t.Helper()
	r, err := local.New(local.Config{Dir: dir, Debounce: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func addrs(eps []kernel.Endpoint) string {
	var s []string
	for _, e := range eps {
		s = append(s, e.Address)
	}
	return strings.Join(s, ",")
}

func TestRegisterResolveDeregister(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := newRegistry(t, dir), newRegistry(t, dir)
	tcp := kernel.Endpoint{Address: "tcp://127.0.0.1:1"}
	quic := kernel.Endpoint{Address: "quic://127.0.0.1:2"}
	uds := kernel.Endpoint{Address: "unix:///tmp/x.sock", Labels: map[string]string{"version": "v2"}}

	steps := []struct {
		name string
		do   func() error
		want string
	}{
		{"a registers tcp", func() error { return a.Register(ctx, "echo", []kernel.Endpoint{tcp}) }, "tcp://127.0.0.1:1"},
		{"b registers quic and uds", func() error { return b.Register(ctx, "echo", []kernel.Endpoint{quic, uds}) }, "quic://127.0.0.1:2,tcp://127.0.0.1:1,unix:///tmp/x.sock"},
		{"registering again changes nothing", func() error { return a.Register(ctx, "echo", []kernel.Endpoint{tcp}) }, "quic://127.0.0.1:2,tcp://127.0.0.1:1,unix:///tmp/x.sock"},
		{"a deregisters", func() error { return a.Deregister(ctx, "echo", []kernel.Endpoint{tcp}) }, "quic://127.0.0.1:2,unix:///tmp/x.sock"},
		{"b closes", b.Close, ""},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		eps, err := a.Resolve(ctx, "echo")
		if s.want == "" {
			if err == nil || !strings.Contains(err.Error(), `no running instance of "echo"`) {
				t.Fatalf("%s: resolve = %v, %v; want an error naming the service", s.name, eps, err)
			}
			continue
		}
		if err != nil || addrs(eps) != s.want {
			t.Fatalf("%s: resolve = %q, %v; want %q", s.name, addrs(eps), err, s.want)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "echo")); len(left) != 0 {
		t.Errorf("files left after every instance left: %v", left)
	}
}

func TestStaleInstanceIgnored(t *testing.T) {
	dir := t.TempDir()
	r := newRegistry(t, dir)
	// A file written by a process that no longer exists.
	os.MkdirAll(filepath.Join(dir, "echo"), 0o700)
	stale := `{"pid": 2147483000, "endpoints": [{"address": "tcp://127.0.0.1:9"}]}`
	if err := os.WriteFile(filepath.Join(dir, "echo", "dead.json"), []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "echo", "garbage.json"), []byte("{"), 0o600)
	if eps, err := r.Resolve(context.Background(), "echo"); err == nil {
		t.Fatalf("resolved %v from a dead process's file", eps)
	}
}

func TestBadServiceName(t *testing.T) {
	r := newRegistry(t, t.TempDir())
	for _, name := range []string{"", "a/b", "..", `a\b`} {
		if err := r.Register(context.Background(), name, []kernel.Endpoint{{Address: "tcp://x:1"}}); err == nil {
			t.Errorf("Register(%q) succeeded", name)
		}
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	server, client := newRegistry(t, dir), newRegistry(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- client.Watch(ctx, "echo", func(eps []kernel.Endpoint) { updates <- addrs(eps) })
	}()
	expect := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case got := <-updates:
				if got == want {
					return
				}
			case <-timeout:
				t.Fatalf("no update with %q", want)
			}
		}
	}
	expect("")
	a := kernel.Endpoint{Address: "tcp://127.0.0.1:1"}
	b := kernel.Endpoint{Address: "quic://127.0.0.1:1"}
	server.Register(ctx, "echo", []kernel.Endpoint{a})
	expect("tcp://127.0.0.1:1")
	server.Register(ctx, "echo", []kernel.Endpoint{b})
	expect("quic://127.0.0.1:1,tcp://127.0.0.1:1")
	server.Deregister(ctx, "echo", []kernel.Endpoint{a})
	expect("quic://127.0.0.1:1")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}
