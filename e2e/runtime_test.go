package e2e_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// load runs calls from a few goroutines until stop, counting failures and
// which generation answered each call.
type load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok       atomic.Int64
	mu       sync.Mutex
	failures []error
	gens     map[string]int
}

func startLoad(c invoker, goroutines int) *load {
	l := &load{stop: make(chan struct{}), gens: map[string]int{}}
	for g := range goroutines {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				var tr metadata.MD
				want := fmt.Sprintf("load-%d-%d", g, i)
				got, err := say(ctx, c, mEcho, want, kernel.Trailer(&tr))
				cancel()
				l.mu.Lock()
				switch {
				case err != nil:
					l.failures = append(l.failures, err)
				case got != want:
					l.failures = append(l.failures, fmt.Errorf("got %q, want %q", got, want))
				default:
					l.ok.Add(1)
					l.gens[tr.Get("generation")]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// finish stops the load and returns its failures and generations seen.
func (l *load) finish() ([]error, map[string]int) {
	close(l.stop)
	l.wg.Wait()
	return l.failures, l.gens
}

// TestGoAwayDuringSwap: a new generation replaces the running one while slow
// calls are in flight and load keeps coming. The slow calls finish on the
// old generation, new calls reach the new one, and no call fails.
func TestGoAwayDuringSwap(t *testing.T) {
	addr := freePort(t)
	srv := startServer(t, srvConf{Addr: addr, Tag: "A"})
	c := newClient(t, srv.addr(), 2)
	mustSay(t, c, mEcho, "warm up")

	const slow = 6
	type slowResult struct {
		gen string
		err error
	}
	slowc := make(chan slowResult, slow)
	for i := range slow {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			var tr metadata.MD
			_, err := say(ctx, c, mSleep, fmt.Sprintf("700ms slow-%d", i), kernel.Trailer(&tr))
			slowc <- slowResult{tr.Get("generation"), err}
		}()
	}
	waitFor(t, "slow calls to start", func() bool { return srv.svc.inflight.Load() == slow })
	l := startLoad(c, 4)
	waitFor(t, "load on generation A", func() bool { return l.ok.Load() > 20 })

	if err := srv.apply(srvConf{Addr: addr, Tag: "B"}); err != nil {
		t.Fatalf("apply B: %v", err)
	}
	// Apply returns once A has drained: the slow calls have been answered.
	for range slow {
		r := recv(t, slowc, "slow call")
		if r.err != nil {
			t.Errorf("slow call in flight during the swap failed: %v", r.err)
		} else if r.gen != "A" {
			t.Errorf("slow call answered by generation %q, want A", r.gen)
		}
	}
	before := l.ok.Load()
	waitFor(t, "load on generation B", func() bool { return l.ok.Load() > before+20 })
	failures, gens := l.finish()
	for _, err := range failures {
		t.Errorf("call failed during the swap: %v", err)
	}
	if gens["A"] == 0 || gens["B"] == 0 || len(gens) != 2 {
		t.Errorf("generations that answered the load: %v, want A and B only", gens)
	}
	var tr metadata.MD
	mustSay(t, c, mEcho, "after", kernel.Trailer(&tr))
	if g := tr.Get("generation"); g != "B" {
		t.Errorf("call after the swap answered by %q, want B", g)
	}
	if g := srv.rt.Generation(); g != 2 {
		t.Errorf("Generation() = %d, want 2", g)
	}
}

// TestApplyMovesListener: a config with a new address opens it and closes the
// old one.
func TestApplyMovesListener(t *testing.T) {
	srv := startServer(t, srvConf{Tag: "A"})
	oldAddr := srv.addr()
	mustSay(t, newClient(t, oldAddr, 1), mEcho, "on A")

	if err := srv.apply(srvConf{Tag: "B"}); err != nil {
		t.Fatal(err)
	}
	newAddr := srv.addr()
	if newAddr == oldAddr {
		t.Fatalf("listener did not move: %s", newAddr)
	}
	var tr metadata.MD
	mustSay(t, newClient(t, newAddr, 1), mEcho, "on B", kernel.Trailer(&tr))
	if tr.Get("generation") != "B" {
		t.Errorf("new address answered by %q, want B", tr.Get("generation"))
	}
	if c, err := net.DialTimeout("tcp", hostPort(oldAddr), time.Second); err == nil {
		c.Close()
		t.Errorf("old address %s still accepts connections", oldAddr)
	}
	if g := srv.rt.Generation(); g != 2 {
		t.Errorf("Generation() = %d, want 2", g)
	}
}

// TestApplyReusesListener: a config with the same transport, address and
// options keeps the listener open across the swap; it is never closed, and
// connections attempted throughout the swap all succeed.
func TestApplyReusesListener(t *testing.T) {
	addr := freePort(t)
	conf := func(tag string) srvConf {
		return srvConf{Transport: "probe", Addr: addr, Options: "{keep_alive: 10s}", Tag: tag}
	}
	srv := startServer(t, conf("A"))
	if srv.probe.listens.Load() != 1 {
		t.Fatalf("listens = %d, want 1", srv.probe.listens.Load())
	}
	target := "tcp://" + addr

	// Dial the port continuously while generations swap.
	stop := make(chan struct{})
	var dials, dialFailures atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			dials.Add(1)
			if err != nil {
				dialFailures.Add(1)
				continue
			}
			c.Close()
		}
	}()
	for i, tag := range []string{"B", "C"} {
		if err := srv.apply(conf(tag)); err != nil {
			t.Fatal(err)
		}
		var tr metadata.MD
		mustSay(t, newClient(t, target, 1), mEcho, "x", kernel.Trailer(&tr))
		if tr.Get("generation") != tag {
			t.Errorf("answered by %q, want %s", tr.Get("generation"), tag)
		}
		if g := srv.rt.Generation(); g != uint64(i+2) {
			t.Errorf("Generation() = %d, want %d", g, i+2)
		}
	}
	close(stop)
	wg.Wait()
	if n := srv.probe.listens.Load(); n != 1 {
		t.Errorf("the transport opened %d listeners, want 1 reused across generations", n)
	}
	if n := srv.probe.listenerCloses.Load(); n != 0 {
		t.Errorf("the listener was closed %d times during the swaps", n)
	}
	if n := dialFailures.Load(); n != 0 {
		t.Errorf("%d of %d dials failed during the swaps", n, dials.Load())
	}
	if got := srv.addr(); got != "probe://"+addr {
		t.Errorf("endpoint %s, want probe://%s", got, addr)
	}

	// Changed options make a new listener: the old one must be closed first
	// and the port reopened... which it cannot be while held, so the runtime
	// must refuse and keep serving.
	err := srv.apply(srvConf{Transport: "probe", Addr: addr, Options: "{keep_alive: 20s}", Tag: "D"})
	if err == nil {
		// Accept a runtime that can rebind; but it must then serve D.
		var tr metadata.MD
		mustSay(t, newClient(t, target, 1), mEcho, "x", kernel.Trailer(&tr))
		if tr.Get("generation") != "D" {
			t.Errorf("answered by %q, want D", tr.Get("generation"))
		}
	} else {
		t.Logf("changing a listener's options on the same address: %v", err)
		if !strings.Contains(err.Error(), "listen[0]") {
			t.Errorf("error %q does not name listen[0]", err)
		}
		mustSay(t, newClient(t, target, 1), mEcho, "still serving")
	}
}

// TestApplyRejectsBrokenConfig: a config that cannot be built or started is
// rejected with an error naming the key path, and the running generation
// keeps serving unchanged.
func TestApplyRejectsBrokenConfig(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldAddr := held.Addr().String()

	addr := freePort(t)
	good := srvConf{Addr: addr, Tag: "A"}
	srv := startServer(t, good)
	c := newClient(t, srv.addr(), 1)
	mustSay(t, c, mEcho, "before")
	eps := srv.rt.Endpoints()

	cases := []struct {
		name string
		conf srvConf
		want []string // substrings of the error
	}{
		{"unknown transport", srvConf{Transport: "carrier-pigeon"}, []string{"listen[0].transport", "carrier-pigeon", "known: probe, tcp"}},
		{"unknown codec", srvConf{Codecs: "[proto, xml]"}, []string{"server.codecs[1]", "xml", "known: proto"}},
		{"unknown interceptor", srvConf{Intercept: "[{use: tag}, {use: nope}]"}, []string{"server.interceptors[1].use", "nope", "known: authz, tag, whoami"}},
		{"unknown registry", srvConf{Registry: "{use: etcd}"}, []string{"registry.use", "etcd", "known: static"}},
		{"unknown listener option", srvConf{Options: "{no_dealy: true}"}, []string{"listen[0].options.no_dealy", "unknown key", "no_delay"}},
		{"bad listener option value", srvConf{Options: "{keep_alive: soon}"}, []string{"listen[0].options.keep_alive", `"soon"`, "duration"}},
		{"bad interceptor option", srvConf{Intercept: "[{use: tag, options: {colour: red}}]"}, []string{"server.interceptors[0].options.colour"}},
		{"address in use", srvConf{Addr: heldAddr}, []string{"listen[0]", heldAddr, "in use"}},
		{"second address in use", srvConf{Addr: addr, Extra: fmt.Sprintf("  - {transport: tcp, address: %q}\n", heldAddr)}, []string{"listen[1]", heldAddr, "in use"}},
		{"unresolvable address", srvConf{Addr: "256.0.0.1:0"}, []string{"listen[0]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := srv.apply(tc.conf)
			if err == nil {
				t.Fatalf("apply of a broken config succeeded:\n%s", tc.conf.yaml())
			}
			t.Logf("rejected: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if g := srv.rt.Generation(); g != 1 {
				t.Errorf("Generation() = %d after a rejected config, want 1", g)
			}
			if got := srv.rt.Endpoints(); len(got) != 1 || got[0].Address != eps[0].Address {
				t.Errorf("Endpoints() = %v, want %v", got, eps)
			}
			var tr metadata.MD
			mustSay(t, c, mEcho, "still serving", kernel.Trailer(&tr))
			if tr.Get("generation") != "A" {
				t.Errorf("answered by %q, want A", tr.Get("generation"))
			}
			mustSay(t, newClient(t, srv.addr(), 1), mEcho, "new connection")
		})
	}
	// A config the loader rejects never reaches the runtime.
	for _, text := range []string{
		"service: x\ntls: {credentials: dev, ca_file: ca.pem}\n",                                            // a file the dev credentials do not read
		"service: x\ntls: {mode: \"off\"}\nlisten: [{address: \"127.0.0.1:0\", protocols: [axon, axon]}]\n", // listed twice
		"service: x\ntls: {mode: \"off\"}\nserver: {limits: {max_concurrent_streams: 0.5}}\n",
	} {
		tree, err := loadTree(text)
		if err == nil {
			_, err = kernel.ParseConfig(tree)
		}
		if err == nil {
			t.Errorf("config accepted:\n%s", text)
		}
	}
	// And the good config still applies afterwards.
	if err := srv.apply(srvConf{Addr: addr, Tag: "B"}); err != nil {
		t.Fatal(err)
	}
	var tr metadata.MD
	mustSay(t, c, mEcho, "after", kernel.Trailer(&tr))
	if tr.Get("generation") != "B" || srv.rt.Generation() != 2 {
		t.Errorf("after a good apply: generation trailer %q, Generation() %d; want B, 2", tr.Get("generation"), srv.rt.Generation())
	}
}

// TestShutdownWaitsForCalls: Shutdown lets calls in flight finish, then
// closes the port.
func TestShutdownWaitsForCalls(t *testing.T) {
	srv := startServer(t, srvConf{})
	addr := srv.addr()
	c := newClient(t, addr, 2)
	const n = 5
	errc := make(chan error, n)
	for i := range n {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			_, err := say(ctx, c, mSleep, fmt.Sprintf("500ms s%d", i))
			errc <- err
		}()
	}
	waitFor(t, "calls to start", func() bool { return srv.svc.inflight.Load() == n })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := srv.rt.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := srv.svc.completed.Load(); got != n {
		t.Errorf("Shutdown returned with %d of %d calls completed", got, n)
	}
	for range n {
		if err := recv(t, errc, "call"); err != nil {
			t.Errorf("call in flight during Shutdown failed: %v", err)
		}
	}
	if conn, err := net.DialTimeout("tcp", hostPort(addr), time.Second); err == nil {
		conn.Close()
		t.Errorf("port %s still open after Shutdown", addr)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := say(ctx2, c, mEcho, "after"); codeOf(err) != status.Unavailable {
		t.Errorf("call after Shutdown: %v, want UNAVAILABLE", err)
	}
	if err := srv.apply(srvConf{}); err == nil {
		t.Error("Apply after Shutdown succeeded")
	}
}

// TestShutdownDrainTimeout: calls that outlive the drain deadline are cut
// off, and Shutdown reports it rather than hanging.
func TestShutdownDrainTimeout(t *testing.T) {
	srv := startServer(t, srvConf{})
	c := newClient(t, srv.addr(), 1)
	started, result := srv.svc.watch("stuck")
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_, err := say(ctx, c, mWatch, "stuck")
		errc <- err
	}()
	recv(t, started, "handler start")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.rt.Shutdown(ctx); err == nil {
		t.Error("Shutdown reported no error although a call outlived its deadline")
	}
	if res := recv(t, result, "handler cancelled"); res.err == nil {
		t.Error("handler context not done")
	}
	if err := recv(t, errc, "call"); err == nil {
		t.Error("call cut off by shutdown succeeded")
	}
}
