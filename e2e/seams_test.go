package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
	static "github.com/axonrpc/axon/plugins/registry-static"
	quic "github.com/axonrpc/axon/plugins/transport-quic"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// The kernel's seams: the lifecycle of plugin instances, reloads that keep
// the connections they need not move, reloads that do not wait for drains,
// and the live view.

// lifeLog counts, per instance value, what the "stamp" interceptor's
// lifecycle did.
type lifeLog struct {
	mu                      sync.Mutex
	built, started, cleaned map[string]int
}

func newLifeLog() *lifeLog {
	return &lifeLog{built: map[string]int{}, started: map[string]int{}, cleaned: map[string]int{}}
}

func (l *lifeLog) count(m map[string]int, v string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return m[v]
}

func (l *lifeLog) add(m map[string]int, v string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m[v]++
}

// stampConfig is the options block of the test-only "stamp" interceptor.
type stampConfig struct {
	Value string `yaml:"value"`
}

// stampInstance is what a stamp interceptor's lifecycle runs on. Start fails
// for the value "fail-start".
type stampInstance struct {
	log   *lifeLog
	value string
	calls atomic.Int64
}

func (s *stampInstance) Start(context.Context) error {
	s.log.add(s.log.started, s.value)
	if s.value == "fail-start" {
		return errors.New("stamp: this instance fails to start on purpose")
	}
	return nil
}

func (s *stampInstance) Close() error {
	s.log.add(s.log.cleaned, s.value)
	return nil
}

func (s *stampInstance) State() any { return map[string]any{"value": s.value, "calls": s.calls.Load()} }

// stampFactory builds "stamp": a server interceptor that sets the response
// header h-stamp to its value on unary calls, and a client interceptor that
// passes calls through; both sides count calls in the live view.
func stampFactory(log *lifeLog) kernel.Factory {
	return kernel.NewFactory(kernel.KindInterceptor, "stamp",
		func() stampConfig { return stampConfig{} },
		func(_ kernel.BuildContext, c stampConfig) (kernel.Interceptor, error) {
			log.add(log.built, c.Value)
			inst := &stampInstance{log: log, value: c.Value}
			return kernel.Interceptor{
				Server: func(ctx context.Context, req any, next kernel.UnaryHandler) (any, error) {
					inst.calls.Add(1)
					if err := kernel.SetHeader(ctx, metadata.New("h-stamp", c.Value)); err != nil {
						return nil, err
					}
					return next(ctx, req)
				},
				StreamServer: func(s kernel.ServerStream, next kernel.StreamHandler) error {
					inst.calls.Add(1)
					return next(s)
				},
				Client: func(ctx context.Context, spec *kernel.Spec, req, resp any, next kernel.UnaryInvoker) error {
					inst.calls.Add(1)
					return next(ctx, spec, req, resp)
				},
				Instance: inst,
			}, nil
		})
}

func stampYAML(values ...string) string {
	var items []string
	for _, v := range values {
		if v == "nope" {
			items = append(items, "{use: nope}")
			continue
		}
		items = append(items, fmt.Sprintf("{use: stamp, options: {value: %q}}", v))
	}
	return "[" + strings.Join(items, ", ") + "]"
}

// TestInstanceLifecycle: an interceptor instance is started once before its
// generation serves and cleaned up exactly once: when a reload retires its
// generation, at shutdown, and when a later step of its own apply fails
// (another plugin, its start, a listener), in which case the running
// generation keeps serving with its own instance untouched.
func TestInstanceLifecycle(t *testing.T) {
	type step struct {
		intercept string // server.interceptors
		extra     string // more listeners
		wantErr   string // "" means the apply succeeds
	}
	cases := []struct {
		name  string
		steps []step
		// after the steps and before shutdown, and after shutdown: the
		// instances' (started, cleaned up) counts by value
		want, wantAfterShutdown map[string][2]int
	}{
		{"reload retires the old generation's instance", []step{
			{intercept: stampYAML("a")}, {intercept: stampYAML("b")},
		}, map[string][2]int{"a": {1, 1}, "b": {1, 0}}, map[string][2]int{"a": {1, 1}, "b": {1, 1}}},
		{"a later plugin fails to build", []step{
			{intercept: stampYAML("a")}, {intercept: stampYAML("b", "nope"), wantErr: `unknown interceptor plugin "nope"`},
		}, map[string][2]int{"a": {1, 0}, "b": {0, 1}}, map[string][2]int{"a": {1, 1}, "b": {0, 1}}},
		{"its start fails", []step{
			{intercept: stampYAML("a")}, {intercept: stampYAML("fail-start"), wantErr: "fails to start on purpose"},
		}, map[string][2]int{"a": {1, 0}, "fail-start": {1, 1}}, map[string][2]int{"a": {1, 1}, "fail-start": {1, 1}}},
		{"a listener fails to open", []step{
			{intercept: stampYAML("a")}, {intercept: stampYAML("b"), extra: "  - {transport: tcp, address: \"256.0.0.1:1\"}\n", wantErr: "listen[1]"},
		}, map[string][2]int{"a": {1, 0}, "b": {1, 1}}, map[string][2]int{"a": {1, 1}, "b": {1, 1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			life := newLifeLog()
			rt, _ := newTestRuntime(t, tcp.Factory, native.Factory, protocodec.Factory, static.Factory, stampFactory(life))
			addr := freePort(t)
			for i, st := range tc.steps {
				cfg := parseConfig(t, srvConf{Addr: addr, Intercept: st.intercept, Extra: st.extra}.yaml())
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				err := rt.Apply(ctx, cfg)
				cancel()
				if st.wantErr == "" && err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if st.wantErr != "" && (err == nil || !strings.Contains(err.Error(), st.wantErr)) {
					t.Fatalf("step %d: got %v, want an error containing %q", i, err, st.wantErr)
				}
			}
			// The running generation serves, with its own instance.
			var h metadata.MD
			mustSay(t, newClient(t, "tcp://"+addr, 1), mEcho, "x", kernel.Header(&h))
			check := func(when string, want map[string][2]int) {
				t.Helper()
				for v, w := range want {
					got := [2]int{life.count(life.started, v), life.count(life.cleaned, v)}
					if got != w {
						t.Errorf("%s: instance %q started %d and cleaned up %d times, want %d and %d", when, v, got[0], got[1], w[0], w[1])
					}
					if b := life.count(life.built, v); b != 1 {
						t.Errorf("%s: instance %q built %d times, want 1", when, v, b)
					}
				}
			}
			// A retired generation is cleaned up once its last call ended,
			// which Apply does not wait for when none runs on kept
			// connections: look until it has happened, then check counts.
			waitFor(t, "the retired instances' cleanup", func() bool {
				for v, w := range tc.want {
					if life.count(life.cleaned, v) < w[1] {
						return false
					}
				}
				return true
			})
			check("before shutdown", tc.want)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if err := rt.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			check("after shutdown", tc.wantAfterShutdown)
		})
	}
}

// TestClientPolicyLifecycle: a built client starts its interceptors before
// it uses them and cleans each up exactly once, on Reload and on Close.
func TestClientPolicyLifecycle(t *testing.T) {
	life := newLifeLog()
	srv := startServer(t, srvConf{})
	cat, err := kernel.NewCatalog([]kernel.Factory{tcp.Factory, native.Factory, protocodec.Factory, static.Factory, stampFactory(life)})
	if err != nil {
		t.Fatal(err)
	}
	conf := func(v string) *kernel.Config {
		return parseConfig(t, "service: c\ntls: {mode: \"off\"}\nregistry: {use: static}\nclient: {interceptors: "+stampYAML(v)+"}\n")
	}
	c, err := kernel.BuildClient(cat, conf("c1"), srv.addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustSay(t, c, mEcho, "x")
	if err := c.Reload(conf("c2")); err != nil {
		t.Fatal(err)
	}
	mustSay(t, c, mEcho, "y")
	if err := c.Reload(conf("fail-start")); err == nil {
		t.Fatal("a policy whose start fails was applied")
	}
	mustSay(t, c, mEcho, "z")
	v := c.View()
	if len(v.Plugins) == 0 || v.Plugins[0].Name != "stamp" {
		t.Fatalf("client view plugins %+v, want the stamp interceptor first", v.Plugins)
	}
	if st, _ := v.Plugins[0].State.(map[string]any); st["value"] != "c2" || st["calls"] != int64(2) {
		t.Errorf("stamp state %v, want value c2 with 2 calls (y and z)", v.Plugins[0].State)
	}
	c.Close()
	c.Close()
	for v, w := range map[string][2]int{"c1": {1, 1}, "c2": {1, 1}, "fail-start": {1, 1}} {
		if got := [2]int{life.count(life.started, v), life.count(life.cleaned, v)}; got != w {
			t.Errorf("client instance %q started %d and cleaned up %d times, want %d and %d", v, got[0], got[1], w[0], w[1])
		}
	}
}

// seamServer serves the Agree service on one TCP port speaking the native
// protocol, gRPC and gRPC-Web, with the stamp interceptor.
type seamServer struct {
	t    *testing.T
	rt   *kernel.Runtime
	cat  *kernel.Catalog
	life *lifeLog
	svc  *agreeService
}

func startSeamServer(t *testing.T, yaml string) *seamServer {
	t.Helper()
	s := &seamServer{t: t, life: newLifeLog(), svc: &agreeService{started: map[string]chan struct{}{}, saw: map[string]chan handlerSaw{}}}
	var err error
	s.cat, err = kernel.NewCatalog([]kernel.Factory{
		tcp.Factory, quic.Factory, native.Factory, grpcproto.Factory, grpcproto.WebFactory,
		protocodec.Factory, static.Factory, stampFactory(s.life),
	})
	if err != nil {
		t.Fatal(err)
	}
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{s.svc.desc()})
	if err != nil {
		t.Fatal(err)
	}
	s.rt = kernel.NewRuntime(s.cat, table, slog.New(slog.DiscardHandler))
	if err := s.apply(yaml); err != nil {
		t.Fatalf("apply: %v\n%s", err, yaml)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		s.rt.Shutdown(ctx)
	})
	return s
}

func (s *seamServer) apply(yaml string) error {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	return s.rt.Apply(ctx, parseConfig(s.t, yaml))
}

func seamYAML(addr, stamp, drain string) string {
	return fmt.Sprintf(`service: seams
tls: {mode: "off"}
registry: {use: static}
listen:
  - {transport: tcp, address: %q, protocols: [axon, grpc, grpc-web]}
server: {drain_timeout: %s, interceptors: %s}
`, addr, drain, stampYAML(stamp))
}

// openChats opens a bidirectional Chat on each protocol and checks that it
// echoes.
func openChats(t *testing.T, ctx context.Context, addr string) map[string]agreeStream {
	t.Helper()
	conns := map[string]agreeConn{
		"axon":     newNativeConn(t, addr, protocodec.Codec{}),
		"grpc":     newGRPCConn(t, addr),
		"grpc-web": newWebConn(t, addr, true),
	}
	streams := map[string]agreeStream{}
	for name, c := range conns {
		s, err := c.stream(ctx, aChat, bidiStreams, nil)
		if err != nil {
			t.Fatalf("%s: open Chat: %v", name, err)
		}
		streams[name] = s
		chat(t, name, s, "hello")
	}
	return streams
}

func chat(t *testing.T, name string, s agreeStream, text string) {
	t.Helper()
	if err := s.send(text); err != nil {
		t.Fatalf("%s: send %q: %v", name, text, err)
	}
	got, err := s.recv()
	if err != nil || got != "re: "+text {
		t.Fatalf("%s: got %q, %v; want %q", name, got, err, "re: "+text)
	}
}

// TestReloadKeepsConnections: long-lived streams over the native protocol,
// gRPC and gRPC-Web survive ten reloads that change only interceptor
// settings, while unary load on kept connections fails no call and takes
// each new generation's chain at once; the first generation's instance is
// cleaned up when the streams that started on it end, not before. A reload
// that moves the listener still drains them.
func TestReloadKeepsConnections(t *testing.T) {
	addr := freePort(t)
	srv := startSeamServer(t, seamYAML(addr, "v0", "1s"))
	ctx, cancel := context.WithTimeout(context.Background(), 4*testTimeout)
	defer cancel()
	streams := openChats(t, ctx, addr)

	client := newNativeConn(t, addr, protocodec.Codec{})
	var failed, ok atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, _, err := client.unary(ctx, aEcho, nil, "load"); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := 1; i <= 10; i++ {
		// Let the load run between reloads, so that calls are in flight
		// on the kept connection when each one lands.
		before := ok.Load() + failed.Load()
		waitFor(t, "load between reloads", func() bool { return ok.Load()+failed.Load() >= before+200 })
		v := fmt.Sprintf("v%d", i)
		if err := srv.apply(seamYAML(addr, v, "1s")); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		for name, s := range streams {
			chat(t, name, s, "after "+v)
		}
		// A new call on the kept connection runs the new chain.
		_, h, _, err := client.unary(ctx, aEcho, nil, "x")
		if err != nil || strings.Join(h["h-stamp"], ",") != v {
			t.Fatalf("after reload %d: header h-stamp %v, err %v; want %s", i, h["h-stamp"], err, v)
		}
		// The previous generation ran only short calls: it is cleaned up
		// once they end. The first one waits for the streams.
		if i > 1 {
			prev := fmt.Sprintf("v%d", i-1)
			waitFor(t, "cleanup of "+prev, func() bool { return srv.life.count(srv.life.cleaned, prev) == 1 })
		}
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d unary calls failed during the reloads; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	t.Logf("%d unary calls during 10 reloads, none failed", ok.Load())
	if sessions := client.c.Sessions(); len(sessions) != 1 {
		t.Errorf("the load client has %d sessions, want its one connection kept: %+v", len(sessions), sessions)
	}
	snap := srv.rt.Snapshot()
	if len(snap.Generations) != 2 || snap.Generations[0].ID != 11 || snap.Generations[1].ID != 1 || snap.Generations[1].State != kernel.GenerationDraining {
		t.Fatalf("generations %+v, want 11 live and 1 draining (its streams still run)", genIDs(snap))
	}
	if n := srv.life.count(srv.life.cleaned, "v0"); n != 0 {
		t.Fatalf("the first generation's instance was cleaned up while its streams run")
	}
	for name, s := range streams {
		if err := s.closeSend(); err != nil {
			t.Fatalf("%s: close send: %v", name, err)
		}
		if _, err := s.recv(); err != io.EOF {
			t.Fatalf("%s: stream ended with %v, want OK", name, err)
		}
	}
	waitFor(t, "cleanup of v0 after its streams ended", func() bool { return srv.life.count(srv.life.cleaned, "v0") == 1 })
	for i := 0; i <= 10; i++ {
		if n := srv.life.count(srv.life.cleaned, fmt.Sprintf("v%d", i)); n != min(1, 10-i) {
			t.Errorf("instance v%d cleaned up %d times", i, n)
		}
	}

	// Moving the listener drains its connections and their streams.
	streams = openChats(t, ctx, addr)
	if err := srv.apply(seamYAML(freePort(t), "moved", "500ms")); err != nil {
		t.Fatal(err)
	}
	for name, s := range streams {
		if _, err := s.recv(); err == nil || err == io.EOF {
			t.Errorf("%s: stream on a moved listener ended with %v, want it cut after the drain", name, err)
		}
	}
}

// freeUDPPort returns a UDP address on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

func genIDs(s kernel.Snapshot) []string {
	var out []string
	for _, g := range s.Generations {
		out = append(out, fmt.Sprintf("%d:%s", g.ID, g.State))
	}
	return out
}

// TestReloadDuringDrain: a reload does not queue behind the drain of the
// generation before it. Calls held open on two moved listeners keep two
// generations draining at once, while a third reload applies.
func TestReloadDuringDrain(t *testing.T) {
	yaml := func(addr, v string) string { return seamYAML(addr, v, "20s") }
	addrs := []string{freePort(t), freePort(t), freePort(t)}
	srv := startSeamServer(t, yaml(addrs[0], "g1"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	hold := func(addr, token string) chan error {
		started, _ := srv.svc.expect(token)
		done := make(chan error, 1)
		c := newNativeConn(t, addr, protocodec.Codec{})
		go func() {
			_, _, _, err := c.unary(ctx, aBlock, nil, token)
			done <- err
		}()
		recv(t, started, "the held call to start")
		return done
	}
	held1 := hold(addrs[0], "t1")
	applied2 := make(chan error, 1)
	go func() { applied2 <- srv.apply(yaml(addrs[1], "g2")) }()
	waitFor(t, "generation 2", func() bool { return srv.rt.Generation() == 2 })
	held2 := hold(addrs[1], "t2")
	// Generation 1 still drains (its call is held), and so Apply of 2 has
	// not returned; generation 3 applies all the same, and generation 2
	// drains too (Swap returns once 3 runs; Apply would wait for 2's drain).
	drained3, err := srv.rt.Swap(context.Background(), parseConfig(t, yaml(addrs[2], "g3")))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-applied2:
		t.Fatalf("apply of generation 2 returned (%v) while generation 1 still drains", err)
	default:
	}
	snap := srv.rt.Snapshot()
	if got := genIDs(snap); strings.Join(got, " ") != "3:live 2:draining 1:draining" {
		t.Fatalf("generations %v, want 3 live, 2 and 1 draining", got)
	}
	c := newNativeConn(t, addrs[2], protocodec.Codec{})
	if _, h, _, err := c.unary(ctx, aEcho, nil, "x"); err != nil || strings.Join(h["h-stamp"], "") != "g3" {
		t.Fatalf("call to generation 3: %v, stamp %v", err, h["h-stamp"])
	}
	cancel() // the held calls end; both drains finish
	for _, ch := range []chan error{held1, held2} {
		if err := recv(t, ch, "a held call's end"); status.CodeOf(err) != status.Canceled {
			t.Errorf("held call ended with %v, want CANCELLED", err)
		}
	}
	if err := recv(t, applied2, "apply of generation 2"); err != nil {
		t.Fatal(err)
	}
	recv(t, drained3, "the drain of generation 2")
	waitFor(t, "generations 1 and 2 cleaned up", func() bool {
		return srv.life.count(srv.life.cleaned, "g1") == 1 && srv.life.count(srv.life.cleaned, "g2") == 1 && len(srv.rt.Snapshot().Generations) == 1
	})
}

// TestSnapshot: the live view of a runtime serving the native protocol,
// gRPC and gRPC-Web on one TCP port and the native protocol over QUIC, after
// a scripted set of calls (some failing), with a second generation running
// and the first still draining a listener that the second dropped.
func TestSnapshot(t *testing.T) {
	addr, held, quicPort := freePort(t), freePort(t), freeUDPPort(t)
	stateDir := t.TempDir()
	yaml := func(withHeld bool, stamp string) string {
		y := fmt.Sprintf(`service: seams
tls: {mode: "off"}
registry: {use: static}
listen:
  - {transport: tcp, address: %q, protocols: [axon, grpc, grpc-web]}
  - {transport: quic, address: %q, options: {state_dir: %q}}
`, addr, quicPort, stateDir)
		if withHeld {
			y += fmt.Sprintf("  - {transport: tcp, address: %q}\n", held)
		}
		return y + "server: {drain_timeout: 20s, interceptors: " + stampYAML(stamp) + "}\n"
	}
	srv := startSeamServer(t, yaml(true, "g1"))
	quicAddr := srv.rt.Endpoints()[1].Address
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	nat, gc, web := newNativeConn(t, addr, protocodec.Codec{}), newGRPCConn(t, addr), newWebConn(t, addr, false)
	qc, err := kernel.BuildClient(srv.cat, parseConfig(t, fmt.Sprintf("service: q\ntls: {mode: \"off\"}\nclient: {transports: {quic: {options: {state_dir: %q}}}}\n", stateDir)), quicAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer qc.Close()
	script := []struct {
		conn agreeConn
		text string
		code status.Code
	}{
		{nat, "", status.OK}, {nat, "", status.OK}, {nat, "5 missing", status.NotFound},
		{gc, "", status.OK}, {gc, "3 bad", status.InvalidArgument},
		{web, "", status.OK}, {web, "", status.OK}, {web, "7 denied", status.PermissionDenied},
		{nativeConn{qc.Client}, "", status.OK},
	}
	for i, s := range script {
		method, text := aEcho, "x"
		if s.code != status.OK {
			method, text = aFail, s.text
		}
		_, _, _, err := s.conn.unary(ctx, method, nil, text)
		if err == nil && s.code == status.OK {
			continue
		}
		if got, _ := s.conn.status(err); err == nil || got != s.code {
			t.Fatalf("script step %d: %v, want %v", i, err, s.code)
		}
	}
	// A call held on the listener the next generation drops keeps
	// generation 1 draining.
	started, _ := srv.svc.expect("held")
	heldDone := make(chan error, 1)
	go func() {
		_, _, _, err := newNativeConn(t, held, protocodec.Codec{}).unary(ctx, aBlock, nil, "held")
		heldDone <- err
	}()
	recv(t, started, "the held call")
	applied := make(chan error, 1)
	go func() { applied <- srv.apply(yaml(false, "g2")) }()
	waitFor(t, "generation 2", func() bool { return srv.rt.Generation() == 2 })

	snap := srv.rt.Snapshot()
	if got := strings.Join(genIDs(snap), " "); got != "2:live 1:draining" {
		t.Fatalf("generations %s, want 2 live and 1 draining", got)
	}
	type connKey struct{ listener, protocol string }
	want := map[connKey]map[status.Code]uint64{
		{addr, "axon"}:               {status.OK: 2, status.NotFound: 1},
		{addr, "grpc"}:               {status.OK: 1, status.InvalidArgument: 1},
		{addr, "grpc-web"}:           {status.OK: 2, status.PermissionDenied: 1},
		{hostPort(quicAddr), "axon"}: {status.OK: 1},
	}
	wantTransport := map[string]string{addr: "tcp", hostPort(quicAddr): "quic"}
	seen := map[connKey]bool{}
	live := snap.Generations[0]
	if len(live.Listeners) != 2 {
		t.Fatalf("live generation lists %d listeners, want 2: %+v", len(live.Listeners), live.Listeners)
	}
	for _, l := range live.Listeners {
		for _, c := range l.Conns {
			k := connKey{hostPort(l.Address), c.Protocol}
			w, ok := want[k]
			if !ok || seen[k] {
				t.Errorf("unexpected connection %+v on %s", c, l.Address)
				continue
			}
			seen[k] = true
			if c.Transport != wantTransport[k.listener] || c.Remote == "" || c.Local == "" || c.InFlight != 0 || c.OpenedAt.IsZero() || c.LastActivity.Before(c.OpenedAt) {
				t.Errorf("%v: %+v", k, c)
			}
			if fmt.Sprint(c.Finished) != fmt.Sprint(w) {
				t.Errorf("%v: finished %v, want %v", k, c.Finished, w)
			}
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("no %s connection listed on %s", k.protocol, k.listener)
		}
	}
	var stamp *kernel.PluginView
	for i, p := range live.Plugins {
		if p.Kind == kernel.KindInterceptor {
			stamp = &live.Plugins[i]
		}
	}
	if stamp == nil || stamp.Name != "stamp" || stamp.Key != "server.interceptors[0]" || stamp.State.(map[string]any)["value"] != "g2" {
		t.Errorf("live generation's interceptor: %+v", stamp)
	}
	draining := snap.Generations[1]
	if len(draining.Listeners) != 1 || hostPort(draining.Listeners[0].Address) != held {
		t.Fatalf("draining generation lists %+v, want only the dropped listener", draining.Listeners)
	}
	if cs := draining.Listeners[0].Conns; len(cs) != 1 || cs[0].InFlight != 1 || cs[0].Protocol != "axon" {
		t.Errorf("dropped listener's connections %+v, want one with the held call in flight", cs)
	}
	if draining.CallsInFlight != 1 {
		t.Errorf("draining generation has %d calls in flight, want 1", draining.CallsInFlight)
	}
	// The client's view of its own sessions.
	sessions := nat.c.Sessions()
	if len(sessions) != 1 || sessions[0].Protocol != "axon" || sessions[0].Transport != "tcp" || sessions[0].Endpoint != "tcp://"+addr ||
		fmt.Sprint(sessions[0].Finished) != fmt.Sprint(map[status.Code]uint64{status.OK: 2, status.NotFound: 1}) {
		t.Errorf("client sessions %+v", sessions)
	}
	if qs := qc.Sessions(); len(qs) != 1 || qs[0].Transport != "quic" || qs[0].Finished[status.OK] != 1 {
		t.Errorf("QUIC client sessions %+v", qs)
	}

	cancel()
	recv(t, heldDone, "the held call's end")
	if err := recv(t, applied, "apply of generation 2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "generation 1 gone from the view", func() bool { return len(srv.rt.Snapshot().Generations) == 1 })
}
