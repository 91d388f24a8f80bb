package e2e_test

// Governance end to end: three or more servers on 127.0.0.1 started by each
// test, clients built from YAML with the governance plugins (breaker, retry,
// ratelimit, colour, balancers, registry-static labels and weights), and a
// front service whose handler calls the backends with its incoming context,
// for the two-hop tests. Assertions are on counts and codes, never on
// speed; the figures the issue asks for (trip time, fast-fail latency,
// amplification) are logged with -v.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/plugins/balancer"
	"github.com/axonrpc/axon/plugins/breaker"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	"github.com/axonrpc/axon/plugins/colour"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	"github.com/axonrpc/axon/plugins/ratelimit"
	local "github.com/axonrpc/axon/plugins/registry-local"
	static "github.com/axonrpc/axon/plugins/registry-static"
	"github.com/axonrpc/axon/plugins/retry"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

const (
	frontName = "axon.test.v1.Front"
	mRelay    = "/" + frontName + "/Relay" // text "METHOD TEXT": calls the backends, answers "TAG|RESPONSE"
)

// govServer is a test server with the governance plugins in its catalog and
// a "gov" server interceptor that counts calls and can be told to fail them.
type govServer struct {
	*server
	name    string
	calls   atomic.Int64 // calls that reached the server's chain
	failing atomic.Bool  // fail every call with UNAVAILABLE
	stall   atomic.Bool  // hold every call until its context is done
	ended   atomic.Int64 // stalled calls whose context ended
}

// govFactories are the governance plugins and the base plugins.
func govFactories() []kernel.Factory {
	return []kernel.Factory{
		tcp.Factory, native.Factory, protocodec.Factory, static.Factory, local.Factory, tagFactory,
		breaker.Factory, retry.Factory, ratelimit.Factory, colour.InterceptorFactory, colour.RouterFactory,
		balancer.RoundRobinFactory, balancer.WeightedFactory, balancer.P2CFactory, balancer.HashFactory,
	}
}

func govCatalog(t testing.TB, extra ...kernel.Factory) *kernel.Catalog {
	t.Helper()
	cat, err := kernel.NewCatalog(append(govFactories(), extra...))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// startGov starts a server named name whose chain is gov, then more (a YAML
// flow list's items), then tag=name; extra services are served beside the
// test service.
func startGov(t testing.TB, name, more string, extra ...*kernel.ServiceDesc) *govServer {
	t.Helper()
	ics := "{use: gov}, "
	if more != "" {
		ics += more + ", "
	}
	conf := srvConf{Service: name, Intercept: fmt.Sprintf("[%s{use: tag, options: {value: %q}}]", ics, name)}
	return startGovConfig(t, name, conf.yaml(), extra...)
}

// startGovConfig starts a server named name from the config text yaml,
// whose plugins may include the gov interceptor.
func startGovConfig(t testing.TB, name, yaml string, extra ...*kernel.ServiceDesc) *govServer {
	t.Helper()
	g := &govServer{name: name}
	gov := kernel.NewFactory(kernel.KindInterceptor, "gov", func() struct{} { return struct{}{} },
		func(kernel.BuildContext, struct{}) (kernel.Interceptor, error) {
			return kernel.Interceptor{Server: func(ctx context.Context, req any, next kernel.UnaryHandler) (any, error) {
				g.calls.Add(1)
				if g.failing.Load() {
					return nil, status.Errorf(status.Unavailable, "%s fails on purpose", name)
				}
				if g.stall.Load() {
					<-ctx.Done()
					g.ended.Add(1)
					return nil, ctx.Err()
				}
				return next(ctx, req)
			}}, nil
		})
	s := &server{t: t, svc: newTestService(), probe: &probe{}}
	s.cat = govCatalog(t, gov)
	table, err := kernel.NewServiceTable(append([]*kernel.ServiceDesc{s.svc.desc()}, extra...))
	if err != nil {
		t.Fatal(err)
	}
	s.rt = kernel.NewRuntime(s.cat, table, nil)
	if err := s.rt.Apply(context.Background(), parseConfig(t, yaml)); err != nil {
		t.Fatalf("apply: %v\n%s", err, yaml)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.rt.Shutdown(ctx); err != nil {
			t.Errorf("shutdown %s: %v", name, err)
		}
	})
	g.server = s
	return g
}

// instance is one registry-static instance line for a server.
func instance(g *govServer, labels string) string {
	if labels == "" {
		labels = "{}"
	}
	return fmt.Sprintf("{address: %q, labels: %s}", g.addr(), labels)
}

// clientYAML is a client process's config: the "backends" service resolved
// from the static instances, and the client block (indented by 2).
func clientYAML(instances []string, client string) string {
	return fmt.Sprintf("service: caller\ntls: {mode: \"off\"}\nregistry:\n  use: static\n  options:\n    instances:\n      backends: [%s]\nclient:\n%s",
		strings.Join(instances, ", "), client)
}

// buildClient builds a client for the backends from YAML.
func buildClient(t testing.TB, yaml string) *kernel.BuiltClient {
	t.Helper()
	c, err := kernel.BuildClient(govCatalog(t), parseConfig(t, yaml), "backends", nil)
	if err != nil {
		t.Fatalf("build client: %v\n%s", err, yaml)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tagged calls method with text and returns the tag of the server that
// answered (its name).
func tagged(ctx context.Context, c invoker, method, text string) (string, error) {
	var tr metadata.MD
	_, err := say(ctx, c, method, text, kernel.Trailer(&tr))
	return tr.Get("generation"), err
}

// front is the relay service: its handler calls the backends with its own
// incoming context through whatever client the test sets.
type front struct {
	c atomic.Pointer[kernel.BuiltClient]
}

func (f *front) desc() *kernel.ServiceDesc {
	return kernel.NewService(frontName,
		kernel.Unary("Relay", func(ctx context.Context, r *echopb.SayRequest) (*echopb.SayResponse, error) {
			method, text, _ := strings.Cut(r.GetText(), " ")
			var tr metadata.MD
			var resp echopb.SayResponse
			if err := f.c.Load().Invoke(ctx, method, &echopb.SayRequest{Text: text}, &resp, kernel.Trailer(&tr)); err != nil {
				se := status.FromError(err)
				return nil, status.New(se.Code(), "relay: "+se.Message())
			}
			return &echopb.SayResponse{Text: tr.Get("generation") + "|" + resp.GetText()}, nil
		}))
}

// TestBreakerOpensAndHealthyTakeTraffic: one of three backends starts
// failing; its breaker opens after consecutive_failures failed calls, and
// from then on every call succeeds on the two healthy backends. A client of
// the failing backend alone fails fast with UNAVAILABLE naming the breaker.
func TestBreakerOpensAndHealthyTakeTraffic(t *testing.T) {
	a, b, c := startGov(t, "a", ""), startGov(t, "b", ""), startGov(t, "c", "")
	const trip = 3
	cl := buildClient(t, clientYAML([]string{instance(a, ""), instance(b, ""), instance(c, "")},
		fmt.Sprintf("  interceptors: [{use: breaker, options: {consecutive_failures: %d, open_for: 1h}}]\n", trip)))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for range 30 {
		if _, err := tagged(ctx, cl, mEcho, "warm"); err != nil {
			t.Fatal(err)
		}
	}
	b.failing.Store(true)
	start := time.Now()
	failed, tripped := 0, time.Duration(0)
	seen := map[string]int{}
	for i := range 300 {
		tag, err := tagged(ctx, cl, mEcho, "x")
		if err != nil {
			if codeOf(err) != status.Unavailable {
				t.Fatalf("call %d: %v", i, err)
			}
			failed++
			if failed == trip {
				tripped = time.Since(start)
			}
			continue
		}
		seen[tag]++
	}
	if failed != trip {
		t.Errorf("%d calls failed while the breaker tripped, want %d (consecutive_failures)", failed, trip)
	}
	if seen["b"] != 0 || seen["a"] == 0 || seen["c"] == 0 {
		t.Errorf("after b failed the calls went to %v", seen)
	}
	t.Logf("breaker trip: %d failed calls, %v from the first failure to the open breaker", failed, tripped)

	// A client of b alone: once its breaker is open, calls fail at once.
	solo := buildClient(t, clientYAML([]string{instance(b, "")},
		fmt.Sprintf("  interceptors: [{use: breaker, options: {consecutive_failures: %d, open_for: 1h}}]\n", trip)))
	for range trip {
		say(ctx, solo, mEcho, "x")
	}
	before := b.calls.Load()
	const n = 2000
	start = time.Now()
	for range n {
		_, err := say(ctx, solo, mEcho, "x")
		if codeOf(err) != status.Unavailable || !strings.Contains(err.Error(), "circuit breaker "+b.addr()+" "+mEcho+" is open; it probes again in") {
			t.Fatalf("call through an open breaker: %v", err)
		}
	}
	per := time.Since(start) / n
	if got := b.calls.Load() - before; got != 0 {
		t.Errorf("%d calls reached b through its open breaker", got)
	}
	t.Logf("open-breaker fast fail: %v per call (mean of %d)", per, n)
}

// TestBreakerHalfOpenRecovers: after open_for the breaker lets a probe
// through; when the backend is healthy again, calls reach it again.
func TestBreakerHalfOpenRecovers(t *testing.T) {
	a, b := startGov(t, "a", ""), startGov(t, "b", "")
	cl := buildClient(t, clientYAML([]string{instance(a, ""), instance(b, "")},
		"  interceptors: [{use: breaker, options: {consecutive_failures: 2, open_for: 50ms}}]\n"))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	b.failing.Store(true)
	for range 20 {
		tagged(ctx, cl, mEcho, "x")
	}
	b.failing.Store(false)
	waitFor(t, "calls to reach b again", func() bool {
		tag, err := tagged(ctx, cl, mEcho, "x")
		return err == nil && tag == "b"
	})
}

// TestRetryAmplificationWithinBudget: with a backend that always fails,
// attempts ÷ calls stays within 1 + budget_ratio (plus the bucket's small
// start), however many attempts a call may make.
func TestRetryAmplificationWithinBudget(t *testing.T) {
	servers := []*govServer{startGov(t, "a", ""), startGov(t, "b", ""), startGov(t, "c", "")}
	var insts []string
	for _, s := range servers {
		s.failing.Store(true)
		insts = append(insts, instance(s, ""))
	}
	cl := buildClient(t, clientYAML(insts, fmt.Sprintf(
		"  interceptors: [{use: retry, options: {max_attempts: 5, initial_backoff: 100us, max_backoff: 1ms, budget_ratio: 0.2, budget_floor: 0, idempotent_methods: [%q]}}]\n", mEcho)))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const calls = 500
	for range calls {
		if _, err := say(ctx, cl, mEcho, "x"); codeOf(err) != status.Unavailable {
			t.Fatalf("call to failing backends: %v", err)
		}
	}
	attempts := int64(0)
	for _, s := range servers {
		attempts += s.calls.Load()
	}
	ratio := float64(attempts) / calls
	t.Logf("retry amplification with every backend failing: %d attempts for %d calls = %.3f (max_attempts 5, budget 0.2)", attempts, calls, ratio)
	// The bucket may hold 10 x 0.2 = 2 retries beyond the ratio.
	if float64(attempts) > calls*1.2+2 {
		t.Errorf("attempts/calls = %.3f, above 1 + budget 0.2", ratio)
	}
	if attempts <= calls {
		t.Errorf("no retries at all (%d attempts for %d calls)", attempts, calls)
	}
}

// TestRetryIdempotentCallOption: a method not listed as idempotent is
// retried when the call says it is (kernel.Idempotent), and only then.
func TestRetryIdempotentCallOption(t *testing.T) {
	back := startGov(t, "back", "")
	back.failing.Store(true)
	cl := buildClient(t, clientYAML([]string{instance(back, "")},
		"  interceptors: [{use: retry, options: {max_attempts: 3, initial_backoff: 100us}}]\n"))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	say(ctx, cl, mEcho, "x")
	if n := back.calls.Load(); n != 1 {
		t.Fatalf("a call not marked idempotent made %d attempts", n)
	}
	say(ctx, cl, mEcho, "x", kernel.Idempotent())
	if n := back.calls.Load() - 1; n != 3 {
		t.Fatalf("a call marked idempotent made %d attempts, want 3", n)
	}
}

// TestHedging: with one of two backends stalled, every call still succeeds
// from the other: the backup attempt answers, its trailer is the call's,
// and the stalled attempt is cancelled.
func TestHedging(t *testing.T) {
	a, b := startGov(t, "a", ""), startGov(t, "b", "")
	a.stall.Store(true)
	cl := buildClient(t, clientYAML([]string{instance(a, ""), instance(b, "")}, fmt.Sprintf(
		"  interceptors: [{use: retry, options: {hedge_after: 2ms, budget_floor: 1000, idempotent_methods: [%q]}}]\n", mEcho)))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for i := range 20 {
		tag, err := tagged(ctx, cl, mEcho, "x")
		if err != nil || tag != "b" {
			t.Fatalf("call %d: answered by %q, %v", i, tag, err)
		}
	}
	if a.calls.Load() == 0 {
		t.Fatal("no call went to the stalled backend: nothing was hedged")
	}
	// The stalled attempts were cancelled: their handlers return.
	waitFor(t, "the stalled attempts to be cancelled", func() bool { return a.ended.Load() == a.calls.Load() })
}

// TestRetryNotRepeatedByNextHop: a retried call's handler calls on with its
// incoming context; the next hop's retry interceptor does not retry.
func TestRetryNotRepeatedByNextHop(t *testing.T) {
	back := startGov(t, "back", "")
	back.failing.Store(true)
	f := &front{}
	fr := startGov(t, "front", "", f.desc())
	retryYAML := fmt.Sprintf("  interceptors: [{use: retry, options: {max_attempts: 3, initial_backoff: 100us, budget_floor: 1000, idempotent_methods: [%q, %q]}}]\n", mEcho, mRelay)
	f.c.Store(buildClient(t, clientYAML([]string{instance(back, "")}, retryYAML)))
	// The test's client calls the front, which relays to the back.
	cl := buildClient(t, clientYAML([]string{instance(fr, "")}, retryYAML))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := say(ctx, cl, mRelay, mEcho+" x"); codeOf(err) != status.Unavailable {
		t.Fatalf("relay to a failing backend: %v", err)
	}
	// Front: 3 attempts. Back: 3 for the first front attempt (not a
	// retry), then 1 for each of the two retries.
	if got, want := fr.calls.Load(), int64(3); got != want {
		t.Errorf("front saw %d attempts, want %d", got, want)
	}
	if got, want := back.calls.Load(), int64(3+1+1); got != want {
		t.Errorf("back saw %d attempts, want %d: retries multiplied along the chain", got, want)
	}
}

// frontServer is a front whose handlers call the backends through a client
// built from the front's own config, which follows the front's reloads.
type frontServer struct {
	*govServer
	conf srvConf
}

// config returns the front's full config with client block client.
func (fs *frontServer) config(t testing.TB, client string) *kernel.Config {
	return parseConfig(t, fs.conf.yaml()+"client:\n"+client)
}

// startFront starts a front on a fixed port whose registry lists insts as
// the "backends" service, and gives f a client built from the front's
// config with client block client; the client follows the front's config
// reloads (Runtime.Follow).
func startFront(t testing.TB, f *front, insts []string, client string) *frontServer {
	t.Helper()
	fs := &frontServer{conf: srvConf{
		Service:   "front",
		Addr:      freePort(t),
		Registry:  fmt.Sprintf("{use: static, options: {instances: {backends: [%s]}}}", strings.Join(insts, ", ")),
		Intercept: `[{use: gov}, {use: tag, options: {value: "front"}}]`,
	}}
	yaml := fs.conf.yaml() + "client:\n" + client
	fs.govServer = startGovConfig(t, "front", yaml, f.desc())
	c, err := kernel.BuildClient(fs.cat, parseConfig(t, yaml), "backends", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Cleanup(fs.rt.Follow(c))
	f.c.Store(c)
	return fs
}

// colourSetup starts two v1 backends, a canary (version v2) and a front
// whose client routes canary calls to v2 and others to v1.
func colourSetup(t *testing.T) (cl *kernel.Client, fs *frontServer, backends []*govServer, client func(rules string) string) {
	v1a, v1b, canary := startGov(t, "v1a", ""), startGov(t, "v1b", ""), startGov(t, "canary", "")
	backends = []*govServer{v1a, v1b, canary}
	insts := []string{instance(v1a, "{version: v1}"), instance(v1b, "{version: v1}"), instance(canary, "{version: v2}")}
	client = func(rules string) string {
		return "  interceptors: [{use: colour}, {use: breaker}]\n" +
			"  router: {use: rules, options: {default_labels: {version: v1}, rules: [" + rules + "]}}\n"
	}
	f := &front{}
	fs = startFront(t, f, insts, client("{colour: canary, labels: {version: v2}}"))
	return newClient(t, fs.addr(), 1), fs, backends, client
}

// TestColourRoutesThroughTwoHops: calls coloured canary by the caller reach
// only the canary backend through the front's handler (which knows nothing
// of colours), and uncoloured calls never do.
func TestColourRoutesThroughTwoHops(t *testing.T) {
	cl, _, _, _ := colourSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	seen := map[string]map[string]int{"canary": {}, "": {}}
	for i := range 200 {
		cctx := ctx
		want := ""
		if i%2 == 0 {
			cctx, want = colour.With(ctx, "canary"), "canary"
		}
		got, err := say(cctx, cl, mRelay, mEcho+" hi")
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		tag, text, _ := strings.Cut(got, "|")
		if text != "hi" {
			t.Fatalf("relayed %q", got)
		}
		seen[want][tag]++
	}
	if len(seen["canary"]) != 1 || seen["canary"]["canary"] != 100 {
		t.Errorf("coloured calls reached %v, want only canary", seen["canary"])
	}
	if seen[""]["canary"] != 0 || seen[""]["v1a"] == 0 || seen[""]["v1b"] == 0 {
		t.Errorf("uncoloured calls reached %v, want v1a and v1b only", seen[""])
	}
}

// TestColourWithLocalRegistry: servers publish their labels (instance:) in
// the single-machine registry, and a client watching it routes coloured
// calls by them; a server that changes its labels by reload changes where
// calls go.
func TestColourWithLocalRegistry(t *testing.T) {
	dir := t.TempDir()
	reg := fmt.Sprintf("{use: local, options: {dir: %q}}", dir)
	conf := func(name, version string) string {
		c := srvConf{Service: "backends", Registry: reg, Intercept: fmt.Sprintf("[{use: gov}, {use: tag, options: {value: %q}}]", name)}
		return c.yaml() + fmt.Sprintf("instance: {labels: {version: %s}, weight: 2}\n", version)
	}
	startGovConfig(t, "v1a", conf("v1a", "v1"))
	startGovConfig(t, "v1b", conf("v1b", "v1"))
	canary := startGovConfig(t, "canary", conf("canary", "v2"))
	cfg := parseConfig(t, fmt.Sprintf("service: caller\ntls: {mode: \"off\"}\nregistry: %s\nclient:\n"+
		"  router: {use: rules, options: {default_labels: {version: v1}, rules: [{colour: canary, labels: {version: v2}}]}}\n", reg))
	cl, err := kernel.BuildClient(govCatalog(t), cfg, "backends", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	waitFor(t, "the canary in the registry", func() bool {
		tag, err := tagged(colour.With(ctx, "canary"), cl, mEcho, "x")
		return err == nil && tag == "canary"
	})
	for i := range 30 {
		cctx, want := ctx, false
		if i%2 == 0 {
			cctx, want = colour.With(ctx, "canary"), true
		}
		tag, err := tagged(cctx, cl, mEcho, "x")
		if err != nil {
			t.Fatal(err)
		}
		if (tag == "canary") != want {
			t.Fatalf("call %d (coloured: %v) answered by %s", i, want, tag)
		}
	}
	// The canary is promoted to v1 by a reload: coloured calls now fail
	// (their rule's fallback is fail) and it takes uncoloured ones.
	if err := canary.rt.Apply(ctx, parseConfig(t, conf("canary", "v1"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the canary's new labels", func() bool {
		_, err := tagged(colour.With(ctx, "canary"), cl, mEcho, "x")
		return codeOf(err) == status.Unavailable
	})
	seen := map[string]bool{}
	for range 30 {
		tag, err := tagged(ctx, cl, mEcho, "x")
		if err != nil {
			t.Fatal(err)
		}
		seen[tag] = true
	}
	if !seen["canary"] {
		t.Errorf("the promoted canary took no uncoloured call: %v", seen)
	}
}

// TestReloadUnderLoadFailsNoCall: the front's config is applied again and
// again while calls run, each time with other routing rules or breaker
// settings for the client its handler uses (which follows the runtime);
// no call fails, and the last rule takes effect.
func TestReloadUnderLoadFailsNoCall(t *testing.T) {
	cl, fs, _, client := colourSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var calls, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx := ctx
			if g%2 == 0 {
				cctx = colour.With(ctx, "canary")
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := say(cctx, cl, mRelay, mEcho+" hi"); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				calls.Add(1)
			}
		}()
	}
	configs := []string{
		client("{colour: canary, labels: {version: v2}}"),
		strings.Replace(client("{colour: canary, labels: {version: v2}}"), "{use: breaker}", "{use: breaker, options: {consecutive_failures: 9, open_for: 5s}}", 1),
		client("{colour: canary, labels: {version: v1}}"),
	}
	const reloads = 12
	for i := range reloads {
		if err := fs.rt.Apply(ctx, fs.config(t, configs[i%len(configs)])); err != nil {
			t.Fatal(err)
		}
		// Let calls run on each configuration.
		n := calls.Load()
		waitFor(t, "calls after a reload", func() bool { return calls.Load() >= n+50 })
	}
	// A broken client section is rejected with its key path, and the
	// running generation and client policy stay.
	gen := fs.rt.Generation()
	err := fs.rt.Apply(ctx, fs.config(t, "  interceptors: [{use: breakr}]\n"))
	if err == nil || !strings.Contains(err.Error(), "client.interceptors[0].use") || fs.rt.Generation() != gen {
		t.Errorf("broken client section: %v (generation %d, was %d)", err, fs.rt.Generation(), gen)
	}
	// End on the rule that sends canary calls to v1.
	if err := fs.rt.Apply(ctx, fs.config(t, configs[2])); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed during reloads; first: %v", failed.Load(), calls.Load(), firstErr.Load())
	}
	for range 20 {
		got, err := say(colour.With(ctx, "canary"), cl, mRelay, mEcho+" hi")
		if err != nil {
			t.Fatal(err)
		}
		if tag, _, _ := strings.Cut(got, "|"); tag == "canary" {
			t.Fatalf("after the reload a canary call still reached the canary")
		}
	}
	t.Logf("%d calls during %d config reloads, none failed", calls.Load(), reloads+1)
}

// TestRateLimit: a rate-limited method returns RESOURCE_EXHAUSTED beyond its
// burst, with a retry hint in the trailer, before its handler runs; other
// methods are not limited.
func TestRateLimit(t *testing.T) {
	s := startGov(t, "a", fmt.Sprintf("{use: ratelimit, options: {limits: {%q: {rps: 0.01, burst: 5}}}}", mEcho))
	startGov(t, "b", "")
	startGov(t, "c", "")
	cl := newClient(t, s.addr(), 1)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for i := range 5 {
		if _, err := say(ctx, cl, mEcho, "x"); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	for range 3 {
		var tr metadata.MD
		_, err := say(ctx, cl, mEcho, "x", kernel.Trailer(&tr))
		if codeOf(err) != status.ResourceExhausted {
			t.Fatalf("over the limit: %v", err)
		}
		if tr.Get(ratelimit.RetryAfterKey) == "" {
			t.Errorf("no %s in the trailer %v", ratelimit.RetryAfterKey, tr)
		}
	}
	if _, err := say(ctx, cl, mMeta, "x"); err != nil {
		t.Errorf("another method: %v", err)
	}
}

// TestWeightedAndHashBalancers: weights from the static registry split
// calls exactly; consistent hashing keeps a key on one backend.
func TestWeightedAndHashBalancers(t *testing.T) {
	a, b, c := startGov(t, "a", ""), startGov(t, "b", ""), startGov(t, "c", "")
	weighted := func(g *govServer, w int) string { return fmt.Sprintf("{address: %q, weight: %d}", g.addr(), w) }
	insts := []string{weighted(a, 3), weighted(b, 1), weighted(c, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	wc := buildClient(t, clientYAML(insts, "  balancer: {use: weighted_round_robin}\n"))
	seen := map[string]int{}
	for range 100 {
		tag, err := tagged(ctx, wc, mEcho, "x")
		if err != nil {
			t.Fatal(err)
		}
		seen[tag]++
	}
	if seen["a"] != 60 || seen["b"] != 20 || seen["c"] != 20 {
		t.Errorf("weights 3:1:1 over 100 calls gave %v", seen)
	}

	hc := buildClient(t, clientYAML(insts, "  balancer: {use: consistent_hash, options: {key: x-user}}\n"))
	owners := map[string]bool{}
	for u := range 30 {
		uctx := metadata.AppendToOutgoingContext(ctx, "x-user", fmt.Sprint("user", u))
		first := ""
		for range 5 {
			tag, err := tagged(uctx, hc, mEcho, "x")
			if err != nil {
				t.Fatal(err)
			}
			if first == "" {
				first = tag
			} else if tag != first {
				t.Fatalf("user %d went to %s then %s", u, first, tag)
			}
		}
		owners[first] = true
	}
	if len(owners) < 2 {
		t.Errorf("30 users all hashed to %v", owners)
	}

	pc := buildClient(t, clientYAML(insts, "  balancer: {use: p2c, options: {by: latency}}\n"))
	for range 50 {
		if _, err := tagged(ctx, pc, mEcho, "x"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOutlierEjection: an endpoint failing consecutive calls is ejected and
// calls go to the others; never more than the configured share is ejected.
func TestOutlierEjection(t *testing.T) {
	a, b, c := startGov(t, "a", ""), startGov(t, "b", ""), startGov(t, "c", "")
	cl := buildClient(t, clientYAML([]string{instance(a, ""), instance(b, ""), instance(c, "")},
		"  outlier: {consecutive_failures: 2, base_ejection: 1h, max_ejected_share: 0.34}\n"))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	b.failing.Store(true)
	failed := 0
	for range 60 {
		if _, err := tagged(ctx, cl, mEcho, "x"); err != nil {
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("%d calls failed before b was ejected, want 2", failed)
	}
	// Now a fails too, but at most 34% of 3 endpoints (one) may be ejected:
	// a keeps getting calls.
	a.failing.Store(true)
	before := a.calls.Load()
	for range 30 {
		tagged(ctx, cl, mEcho, "x")
	}
	if a.calls.Load() == before {
		t.Error("a second endpoint was ejected beyond max_ejected_share")
	}
}

// TestDeadlinePropagatesThroughTwoHops: the backend a handler calls with its
// incoming context sees the caller's deadline (less the time used), and a
// method timeout from config bounds calls that have no deadline.
func TestDeadlinePropagatesThroughTwoHops(t *testing.T) {
	back := startGov(t, "back", "")
	f := &front{}
	fr := startGov(t, "front", "", f.desc())
	f.c.Store(buildClient(t, clientYAML([]string{instance(back, "")}, "  interceptors: []\n")))
	cl := newClient(t, fr.addr(), 1)

	started, result := back.svc.watch("two-hop")
	// Each hop sends the time left and the next re-bases it on arrival, so
	// the backend's time left when its handler starts is at most what the
	// caller gave, less what the front used (the wire time is not known).
	const given = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), given)
	go func() {
		recv(t, started, "the backend handler to start")
		cancel()
	}()
	_, err := say(ctx, cl, mRelay, mWatch+" two-hop")
	res := recv(t, result, "the backend handler's result")
	if !res.hasDeadline || res.left >= given || res.left <= 0 {
		t.Fatalf("backend saw %v left (deadline set: %v), the caller gave %v", res.left, res.hasDeadline, given)
	}
	t.Logf("two hops: the caller gave %v, the backend's handler started with %v left", given, res.left)
	if codeOf(err) != status.Canceled && codeOf(err) != status.DeadlineExceeded {
		t.Errorf("cancelled relay returned %v", err)
	}

	// A method timeout in the client config.
	mt := buildClient(t, clientYAML([]string{instance(back, "")}, fmt.Sprintf("  method_timeouts: {%q: 200ms}\n", mWatch)))
	started, result = back.svc.watch("method-timeout")
	_, err = say(context.Background(), mt, mWatch, "method-timeout")
	recv(t, started, "the handler to start")
	res = recv(t, result, "the handler's result")
	if codeOf(err) != status.DeadlineExceeded || !res.hasDeadline || res.left > 200*time.Millisecond {
		t.Errorf("method timeout: err %v, handler had %v left (deadline set: %v)", err, res.left, res.hasDeadline)
	}
	// The method timeout caps a longer deadline too, and leaves a shorter
	// one alone.
	for _, tc := range []struct {
		given time.Duration
		max   time.Duration
	}{{time.Hour, 200 * time.Millisecond}, {100 * time.Millisecond, 100 * time.Millisecond}} {
		tok := fmt.Sprint("given-", tc.given)
		started, result = back.svc.watch(tok)
		cctx, ccancel := context.WithTimeout(context.Background(), tc.given)
		say(cctx, mt, mWatch, tok)
		ccancel()
		recv(t, started, "the handler to start")
		if res := recv(t, result, "the handler's result"); res.left > tc.max {
			t.Errorf("deadline %v with method timeout 200ms: handler had %v left", tc.given, res.left)
		}
	}
}

// BenchmarkGovernanceChain measures what the full client chain (colour,
// retry, breaker, rules router, p2c, outlier ejection) and the server's
// rate limiter add to an echo round trip over loopback, against the same
// round trip without them.
func BenchmarkGovernanceChain(b *testing.B) {
	s := startGov(b, "a", "{use: ratelimit, options: {rps: 1000000000, max_concurrent: 10000}}")
	plain := startGov(b, "p", "")
	full := clientYAML([]string{instance(s, "{version: v1}")},
		"  interceptors: [{use: colour}, {use: retry, options: {idempotent_methods: [\"/axon.test.v1.Test/*\"]}}, {use: breaker}]\n"+
			"  balancer: {use: p2c}\n"+
			"  router: {use: rules, options: {default_labels: {version: v1}, rules: [{colour: canary, labels: {version: v2}, fallback: default}]}}\n"+
			"  outlier: {consecutive_failures: 5}\n")
	bare := clientYAML([]string{instance(plain, "")}, "  interceptors: []\n")
	for _, bc := range []struct{ name, yaml string }{{"bare", bare}, {"full", full}} {
		b.Run(bc.name, func(b *testing.B) {
			c := buildClient(b, bc.yaml)
			ctx := context.Background()
			req, resp := &echopb.SayRequest{Text: "x"}, &echopb.SayResponse{}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Invoke(ctx, mEcho, req, resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// nullProto is a protocol whose sessions answer every call at once without
// I/O, so a benchmark of a client over it measures the client alone.
type nullProto struct{}

func (nullProto) NewServer(*kernel.Dispatcher) kernel.ServerConn { return nil }
func (nullProto) NewSession(c net.Conn, _ kernel.SessionOptions) (kernel.Session, error) {
	c.Close()
	return nullSession{}, nil
}

type nullSession struct{}

func (nullSession) Invoke(context.Context, *kernel.ClientCall, any, any) error { return nil }
func (nullSession) NewStream(context.Context, *kernel.ClientCall) (kernel.ClientStream, error) {
	return nil, status.New(status.Unimplemented, "null")
}
func (nullSession) Accepting() bool       { return true }
func (nullSession) InFlight() int         { return 0 }
func (nullSession) Done() <-chan struct{} { return nil }
func (nullSession) Drain()                {}
func (nullSession) Close() error          { return nil }

type nullTransport struct{}

func (nullTransport) Listen(context.Context, string) (net.Listener, error) { return nil, net.ErrClosed }
func (nullTransport) Dial(context.Context, string) (net.Conn, error) {
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

// BenchmarkGovernanceOverhead measures the client-side cost of the
// governance chain alone (no network): the same client with no policy and
// with colour, retry, breaker, rules router, p2c and outlier ejection, over
// a protocol that answers at once; and the server-side rate limiter.
func BenchmarkGovernanceOverhead(b *testing.B) {
	null := []kernel.Factory{
		kernel.NewFactory(kernel.KindProtocol, "noop", func() struct{} { return struct{}{} },
			func(kernel.BuildContext, struct{}) (kernel.Protocol, error) { return nullProto{}, nil }),
		kernel.NewFactory(kernel.KindTransport, "noop", func() struct{} { return struct{}{} },
			func(kernel.BuildContext, struct{}) (kernel.Transport, error) { return nullTransport{}, nil }),
	}
	insts := []string{`{address: "noop://a", labels: {version: v1}}`, `{address: "noop://b", labels: {version: v1}}`, `{address: "noop://c", labels: {version: v2}}`}
	for _, bc := range []struct{ name, client string }{
		{"none", "  protocol: noop\n"},
		{"full", "  protocol: noop\n" +
			"  interceptors: [{use: colour}, {use: retry, options: {idempotent_methods: [\"/axon.test.v1.Test/*\"]}}, {use: breaker}]\n" +
			"  balancer: {use: p2c}\n" +
			"  router: {use: rules, options: {default_labels: {version: v1}, rules: [{colour: canary, labels: {version: v2}}]}}\n" +
			"  outlier: {consecutive_failures: 5}\n"},
	} {
		b.Run("client-"+bc.name, func(b *testing.B) {
			c, err := kernel.BuildClient(govCatalog(b, null...), parseConfig(b, clientYAML(insts, bc.client)), "backends", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			req, resp := &echopb.SayRequest{Text: "x"}, &echopb.SayResponse{}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Invoke(ctx, mEcho, req, resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("server-ratelimit", func(b *testing.B) {
		l := ratelimit.New(ratelimit.Config{Scope: "method", RPS: 1e12, MaxConcurrent: 1 << 30})
		ctx := kernel.NewCallContext(context.Background(), &kernel.ServerCall{Method: &kernel.MethodDesc{FullName: mEcho}})
		h := func(context.Context, any) (any, error) { return nil, nil }
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Unary(ctx, nil, h); err != nil {
				b.Fatal(err)
			}
		}
	})
}
