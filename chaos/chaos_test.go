package chaos

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// scenario is one attack: what the attacker connections do, how many run
// at once, the server limits, and the bound within which the server must
// close each of them (3x the limit that should cut it, plus 2 s).
type scenario struct {
	name     string
	limits   map[string]string // on top of baseLimits
	conns    int               // attacker connections at once; each reconnects when closed
	attack   func(context.Context, net.Conn, *connRec)
	bound    time.Duration
	boundWhy string
	grpc     bool // the legitimate load includes a grpc-go client
	// knownGap, when set, says why the scenario's RSS after the attack,
	// and legitimate calls that fail during it, are reported and not
	// asserted: a known gap, named in the summary line.
	knownGap string
}

// h2Goroutines is h2-half-open's known gap.
const h2Goroutines = "net/http's HTTP/2 server starts a goroutine per stream before its request arrives; " +
	"50,000 streams a second starve the legitimate calls (on a 2-core machine a few time out), and " +
	"after the burst the Go runtime keeps their g structs and span metadata (about 45-55 MB). " +
	"Axon's own HTTP/2 server (the gRPC performance issue) is the fix"

// boundOf is 3x the limit that should cut the attack, plus 2 s of slack.
func boundOf(d time.Duration) time.Duration { return 3*d + 2*time.Second }

// Limits of baseLimits, as durations, for the bounds.
const (
	requestTimeout   = 1 * time.Second
	writeTimeout     = 2 * time.Second
	idleTimeout      = 2 * time.Second
	handshakeTimeout = 2 * time.Second
	rateWindow       = 1 * time.Second // control_frame_rate is per second, burst as many
)

// Many idle connections: the per-IP cap must not be what closes them.
var manyConns = map[string]string{"max_connections_per_ip": "6000", "max_connections": "10000"}

var scenarios = []scenario{
	// A connection that does not read is cut by write_timeout once the
	// server's writes stall; when its output fitted in the kernel's buffers
	// instead, it goes idle (idle_timeout) and its close then waits
	// write_timeout for the output to move before it resets.
	{name: "native-slow-reader", conns: 200, attack: nativeSlowReader,
		bound: boundOf(writeTimeout + idleTimeout), boundWhy: "3x(write_timeout+idle_timeout)+2s"},
	{name: "native-half-open", conns: 500, attack: nativeHalfOpen(100),
		bound: boundOf(requestTimeout + idleTimeout), boundWhy: "3x(request_timeout+idle_timeout)+2s"},
	{name: "h2-half-open", conns: 500, attack: h2HalfOpen(100), grpc: true, knownGap: h2Goroutines,
		bound: boundOf(requestTimeout + idleTimeout), boundWhy: "3x(request_timeout+idle_timeout)+2s"},
	{name: "native-idle", conns: 5000, attack: nativeIdle, limits: manyConns,
		bound: boundOf(idleTimeout), boundWhy: "3x idle_timeout+2s"},
	{name: "h2-idle", conns: 5000, attack: h2Idle, limits: manyConns, grpc: true,
		bound: boundOf(idleTimeout), boundWhy: "3x idle_timeout+2s"},
	{name: "native-slowloris-preface", conns: 500, attack: nativeSlowPreface,
		bound: boundOf(handshakeTimeout), boundWhy: "3x handshake_timeout+2s"},
	{name: "web-slowloris-body", conns: 500, attack: webSlowBody, grpc: true,
		bound: boundOf(requestTimeout), boundWhy: "3x request_timeout+2s"},
	{name: "native-useless-frames", conns: 2, attack: nativeUseless,
		bound: boundOf(rateWindow), boundWhy: "3x 1s of control_frame_rate+2s"},
	{name: "native-open-cancel", conns: 2, attack: nativeOpenCancel,
		bound: boundOf(rateWindow), boundWhy: "3x 1s of control_frame_rate+2s"},
	{name: "h2-settings-flood", conns: 2, attack: h2SettingsFlood, grpc: true,
		bound: boundOf(rateWindow), boundWhy: "3x 1s of control_frame_rate+2s"},
	{name: "h2-rapid-reset", conns: 2, attack: h2RapidReset, grpc: true,
		bound: boundOf(rateWindow), boundWhy: "3x 1s of control_frame_rate+2s"},
}

// rssSlack is how far above its baseline the server's RSS may stay 10 s
// after an attack (both the least of 2 s of samples: settledStats).
const rssSlack = 50 << 20

// p99Target is the p99 ratio (attack / baseline) the issue aims for; it is
// reported, not asserted.
const p99Target = 3.0

var (
	summaryMu sync.Mutex
	summaries []string
)

func TestChaos(t *testing.T) {
	requireOptIn(t)
	nofile := raiseNoFile(t)
	t.Logf("RLIMIT_NOFILE %d (the server inherits it)", nofile)
	axonBinary(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { run(t, sc) })
	}
	summaryMu.Lock()
	defer summaryMu.Unlock()
	t.Logf("summary (p99 ratio target %.0fx, reported only):\n%s", p99Target, strings.Join(summaries, "\n"))
}

func run(t *testing.T, sc scenario) {
	limits := baseLimits()
	maps.Copy(limits, sc.limits)
	srv := startServer(t, limits)
	t.Logf("server pid %d on %s; limits %v", srv.pid, srv.addr, limits)

	// Baseline: 5 s of legitimate load alone.
	load := startLegit(t, srv.addr, sc.grpc)
	defer load.stop()
	t0 := time.Now()
	time.Sleep(baselineFor - settleSample)
	base := srv.settledStats(settleSample)

	// The attack, for 20 s.
	tAttack := time.Now()
	peaks := samplePeaks(srv, 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), attackFor)
	defer cancel()
	env := &attackEnv{addr: srv.addr, conns: &conns{}, logf: t.Logf}
	attackDone := make(chan struct{})
	go func() {
		defer close(attackDone)
		env.fleet(ctx, sc.conns, 64, sc.attack)
	}()
	<-ctx.Done()
	tEnd := time.Now()
	select {
	case <-attackDone:
	case <-time.After(10 * time.Second):
		t.Errorf("the attackers did not stop within 10 s")
	}
	peak := peaks.finish()

	// 10 s after the attackers closed their connections.
	time.Sleep(settleFor - settleSample)
	after := srv.settledStats(settleSample)
	alive := srv.alive()
	load.stop()

	bw := load.window(t0, tAttack)
	aw := load.window(tAttack, tEnd)
	all := load.window(t0, time.Now())
	cs := env.conns.summary(tEnd, sc.bound)
	ratio := 0.0
	if bw.p99 > 0 {
		ratio = float64(aw.p99) / float64(bw.p99)
	}

	t.Logf("legit baseline: %d calls, %d failed, p50 %v p99 %v", bw.calls, bw.failed, bw.p50, bw.p99)
	t.Logf("legit attack:   %d calls, %d failed, p50 %v p99 %v (p99 ratio %.2fx, target <= %.0fx)",
		aw.calls, aw.failed, aw.p50, aw.p99, ratio, p99Target)
	t.Logf("legit overall:  %d calls, %d failed", all.calls, all.failed)
	for e, n := range all.errs {
		t.Logf("legit error x%d: %s", n, e)
	}
	t.Logf("attacker: %d connections, %d closed by the server (lifetime max %v, median %v), %d open at the end (oldest %v), %d over the bound %v (%s), %d dials failed %s",
		cs.total, cs.closedByServer, cs.maxLife.Round(time.Millisecond), cs.medianLife.Round(time.Millisecond),
		cs.openAtEnd, cs.oldestOpen.Round(time.Millisecond), cs.overdue, sc.bound, sc.boundWhy, cs.dialFailed, cs.lastDialErr)
	t.Logf("server baseline/peak/after: RSS %s/%s/%s; live heap at the last GC %s/%s/%s; fds %d/%d/%d; threads %d/%d/%d",
		mb(base.rss), mb(peak.rss), mb(after.rss), mb(base.heap), mb(peak.heap), mb(after.heap),
		base.fds, peak.fds, after.fds, base.threads, peak.threads, after.threads)

	var fails, gaps []string
	// bounded is where a bound on time or memory goes: a failure, or with
	// CHAOS_BOUNDS=report (CI, on shared machines whose load can starve
	// the server's timers) a reported excess.
	bounded := func(msg string) {
		if os.Getenv("CHAOS_BOUNDS") == "report" {
			gaps = append(gaps, "REPORTED "+msg)
			t.Logf("over a bound, reported and not asserted (CHAOS_BOUNDS=report): %s", msg)
			return
		}
		fails = append(fails, msg)
	}
	if all.failed > 0 {
		msg := fmt.Sprintf("%d legit calls failed", all.failed)
		if sc.knownGap == "" {
			fails = append(fails, msg)
		} else {
			gaps = append(gaps, "KNOWN GAP "+msg)
			t.Logf("KNOWN GAP, not asserted: %s: %s", msg, sc.knownGap)
		}
	}
	if cs.overdue > 0 {
		bounded(fmt.Sprintf("%d attacker conns outlived %v", cs.overdue, sc.bound))
	}
	if cs.total == 0 {
		fails = append(fails, "no attacker connection opened")
	}
	if after.rss-base.rss > rssSlack {
		msg := fmt.Sprintf("RSS after %s > baseline %s + 50MB", mb(after.rss), mb(base.rss))
		if sc.knownGap == "" {
			bounded(msg)
		} else {
			gaps = append(gaps, "KNOWN GAP "+msg)
			t.Logf("KNOWN GAP, not asserted: %s: %s", msg, sc.knownGap)
		}
	}
	if !alive {
		fails = append(fails, "server process died")
	}
	verdict := "PASS"
	if len(gaps) > 0 {
		verdict = "PASS with " + strings.Join(gaps, "; ")
	}
	if len(fails) > 0 {
		verdict = "FAIL: " + strings.Join(fails, "; ")
		t.Error(strings.Join(fails, "; "))
		t.Logf("server log (tail):\n%s", tail(srv.stderr.String(), 20))
	}
	rate := func(w window, d time.Duration) float64 { return float64(w.calls) / d.Seconds() }
	line := fmt.Sprintf("CHAOS %-24s | attacker conns %5d, closed by server %5d, open at end %4d, life max %6s med %6s, bound %s | legit %6d calls %3d failed, %5.0f/s -> %5.0f/s | p99 %6s -> %7s = %5.1fx | RSS %s/%s/%s (heap %s) | %s",
		sc.name, cs.total, cs.closedByServer, cs.openAtEnd, short(max(cs.maxLife, cs.oldestOpen)), short(cs.medianLife), sc.bound,
		all.calls, all.failed, rate(bw, tAttack.Sub(t0)), rate(aw, tEnd.Sub(tAttack)),
		short(bw.p99), short(aw.p99), ratio, mb(base.rss), mb(peak.rss), mb(after.rss), mb(after.heap), verdict)
	t.Log(line)
	summaryMu.Lock()
	summaries = append(summaries, line)
	summaryMu.Unlock()
}

// short prints a duration with 3 significant figures at most.
func short(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestScenarioNames keeps the table honest without running it.
func TestScenarioNames(t *testing.T) {
	seen := map[string]bool{}
	var names []string
	for _, sc := range scenarios {
		if seen[sc.name] {
			t.Errorf("duplicate scenario %q", sc.name)
		}
		seen[sc.name] = true
		names = append(names, sc.name)
		if sc.bound <= 0 || sc.conns <= 0 || sc.attack == nil {
			t.Errorf("scenario %q is incomplete", sc.name)
		}
	}
	sort.Strings(names)
	if !strings.Contains(configYAML(baseLimits()), "request_timeout: 1s") {
		t.Errorf("config lacks the limits:\n%s", configYAML(baseLimits()))
	}
}
