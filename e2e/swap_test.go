package e2e_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	local "github.com/axonrpc/axon/plugins/registry-local"
	quic "github.com/axonrpc/axon/plugins/transport-quic"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
	uds "github.com/axonrpc/axon/plugins/transport-uds"
)

// swapStep is one generation of the swap test: where the server listens.
type swapStep struct {
	transport string
	addr      string // a template; %s is a per-test temporary folder
}

// swapFactories are the transports the swap test moves between.
var swapFactories = []kernel.Factory{tcp.Factory, quic.Factory, uds.Factory}

var swapSteps = []swapStep{
	{"tcp", "127.0.0.1:0"},
	{"quic", "127.0.0.1:0"},
	{"uds", "%s/echo.sock"},
	{"tcp", "127.0.0.1:0"},
}

func swapConfig(st swapStep, dir string) string {
	addr := st.addr
	if slices.Contains([]rune(addr), '%') {
		addr = fmt.Sprintf(addr, dir)
	}
	return fmt.Sprintf(`service: swap
tls: {mode: "off"}
listen: [{transport: %s, address: %q}]
registry: {use: local, options: {dir: %q, debounce: 5ms}}
server: {drain_timeout: 10s}
`, st.transport, addr, dir+"/registry")
}

func countFDs() int {
	fds, _ := os.ReadDir("/proc/self/fd")
	return len(fds)
}

// TestHotSwapUnderLoad moves a running server from listener to listener
// while clients call it without pause: no call may fail, the old address
// must close after its drain, and goroutines and file descriptors return to
// their baseline after each swap. Latency during swaps against steady state
// (p99, max, and how many calls were over 4x the steady p99 in each) is
// logged: a measurement, not an assertion.
func TestHotSwapUnderLoad(t *testing.T) {
	dir, err := os.MkdirTemp("", "axsw") // short: socket paths are limited to 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// QUIC's development CA: the server creates it, the client trusts it.
	t.Setenv("XDG_STATE_HOME", dir+"/state")
	rt, cat := newTestRuntime(t, append([]kernel.Factory{native.Factory, protocodec.Factory, local.Factory}, swapFactories...)...)
	defer rt.Shutdown(context.Background()) // before dir goes
	apply := func(st swapStep) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := rt.Apply(ctx, parseConfig(t, swapConfig(st, dir))); err != nil {
			t.Fatalf("apply %v: %v", st, err)
		}
	}
	apply(swapSteps[0])

	client, err := kernel.BuildClient(cat, parseConfig(t, swapConfig(swapSteps[0], dir)), "swap", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	// Load: callers in a closed loop; gate pauses them between steps.
	const callers = 8
	var (
		gate     sync.RWMutex
		stop     atomic.Bool
		calls    atomic.Int64
		failures atomic.Int64
		firstErr atomic.Value
		swapping atomic.Bool
		latMu    sync.Mutex
		steady   []time.Duration
		during   []time.Duration
		wg       sync.WaitGroup
	)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine, mineSwap []time.Duration
			for n := 0; !stop.Load(); n++ {
				gate.RLock()
				inSwap := swapping.Load()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				text := fmt.Sprintf("%d-%d", i, n)
				got, err := say(ctx, client, mEcho, text)
				d := time.Since(start)
				cancel()
				gate.RUnlock()
				calls.Add(1)
				if err == nil && got != text {
					err = fmt.Errorf("got %q, want %q", got, text)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					if failures.Add(1) <= 5 {
						t.Logf("call failed at %v after %v: %v (server endpoints now %v)", time.Now().Format("15:04:05.000"), d, err, rt.Endpoints())
					}
				}
				if inSwap || swapping.Load() {
					mineSwap = append(mineSwap, d)
				} else {
					mine = append(mine, d)
				}
			}
			latMu.Lock()
			steady, during = append(steady, mine...), append(during, mineSwap...)
			latMu.Unlock()
		}()
	}

	// quiet pauses the load and waits for goroutines and descriptors to
	// settle at or below limit (when given); it returns the counts.
	quiet := func(limitG, limitFD int) (int, int) {
		gate.Lock()
		defer gate.Unlock()
		var g, fd int
		deadline := time.Now().Add(15 * time.Second)
		for {
			runtime.GC()
			g, fd = runtime.NumGoroutine(), countFDs()
			if limitG == 0 || (g <= limitG && fd <= limitFD) || time.Now().After(deadline) {
				return g, fd
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond)
	baseG, baseFD := quiet(0, 0)
	// A little slack: the runtime's own goroutines (timers, fsnotify) vary.
	const slackG, slackFD = 4, 2

	for _, st := range swapSteps[1:] {
		old := rt.Endpoints()[0].Address
		time.Sleep(300 * time.Millisecond)
		swapping.Store(true)
		t.Logf("swap to %s %s at %v", st.transport, st.addr, time.Now().Format("15:04:05.000"))
		apply(st)
		swapping.Store(false)
		now := rt.Endpoints()[0].Address
		if now == old {
			t.Fatalf("endpoint did not change: %s", now)
		}
		switch scheme, addr := kernel.SplitAddress(old); scheme {
		case "tcp":
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Errorf("old address %s still accepts connections after its drain", old)
			}
		case "unix":
			if _, err := os.Stat(addr); err == nil {
				t.Errorf("old socket %s still exists after its drain", addr)
			}
		}
		g, fd := quiet(baseG+slackG, baseFD+slackFD)
		if g > baseG+slackG || fd > baseFD+slackFD {
			t.Errorf("after swapping to %s: %d goroutines, %d fds; baseline %d, %d", now, g, fd, baseG, baseFD)
		}
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d calls failed during swaps; first: %v", n, calls.Load(), firstErr.Load())
	}
	if calls.Load() < 100 {
		t.Fatalf("only %d calls made", calls.Load())
	}
	// Slow calls: over 4x steady p99, counted in both phases, so that a
	// longer swap (server.handover) cannot hide them in a larger sample.
	slowAt := 4 * quantile(steady, 0.99)
	slow := func(d []time.Duration) int {
		n := 0
		for _, x := range d {
			if x > slowAt {
				n++
			}
		}
		return n
	}
	t.Logf("%d calls, 0 failed, %d swaps; steady (%d calls): p99 %v, max %v; during swaps (%d calls): p99 %v, max %v; calls over %v: %d steady, %d during swaps",
		calls.Load(), len(swapSteps)-1, len(steady), quantile(steady, 0.99), quantile(steady, 1), len(during), quantile(during, 0.99), quantile(during, 1),
		slowAt, slow(steady), slow(during))
}

// quantile returns the q quantile (0 < q <= 1) of d, which it sorts.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*q))]
}
