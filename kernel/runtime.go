package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel/config"
)

// Runtime runs configuration generations. Apply builds a new generation,
// starts it beside the running one, swaps it in, drains the old one and
// cleans it up; if any step before the swap fails, the running generation
// keeps serving and Apply returns the error.
//
// A listener whose transport, address, options, protocols, TLS and server
// limits are unchanged is carried into the new generation with its
// connections: calls that start on them afterwards run the new generation's
// chains, calls in flight finish on the old ones, and the old generation's
// plugins are cleaned up once its last call has ended. A listener that
// changes only its protocols or their settings keeps its port (the socket is
// handed over) while its old connections drain; one that moves drains and
// closes.
//
// Runtime is safe for concurrent use. Applies are serialised, but not behind
// drains: Apply returns once its predecessor has drained, while another
// Apply may already have swapped in a newer generation, so several
// generations may drain at once.
type Runtime struct {
	cat   *Catalog
	table *ServiceTable
	log   *slog.Logger

	mu     sync.Mutex                 // serialises building, starting and swapping
	cur    atomic.Pointer[generation] // written under mu; read freely
	seq    uint64
	closed bool

	followers []Follower // told of each configuration applied (see Follow)
	budget    *Budget    // buffered bytes, shared by every generation
	gate      *connGate  // caps on server connections, shared likewise

	viewMu   sync.Mutex
	draining []*generation // replaced generations not yet cleaned up, oldest first
	retiring sync.WaitGroup

	stopInit, stoppingOnce sync.Once
	stopCh                 chan struct{} // closed when Shutdown begins
	reclaiming             sync.Once     // starts the gate's reclaimLoop with the first generation
}

type generation struct {
	id        uint64
	cfg       *Config
	table     *dispatchTable
	resolver  Resolver
	listeners []*boundListener
	insts     instances // codecs, interceptors, registry
}

// boundListener is a listener and the protocol server on it. It belongs to
// the generations that carry it, from the one that built it to the last one
// whose configuration leaves it unchanged; its transport and protocol
// instances live as long as it does.
type boundListener struct {
	key       string // what must not change for the socket to be handed over
	serveKey  string // what must not change for the connections to be kept
	cfg       ListenConfig
	transport Transport
	scheme    string // of the endpoint URL
	shared    *sharedListener
	server    ServerConn
	disp      *Dispatcher // the server's; switched to each generation that carries it
	endpoint  Endpoint
	insts     instances // the transport and protocols
}

// sharedListener accepts connections and hands each to the server of the
// generation that currently owns it.
type sharedListener struct {
	ln      net.Listener
	handler atomic.Pointer[serverBox]
	done    chan struct{}
	log     *slog.Logger
	gate    *connGate
}

type serverBox struct{ s ServerConn }

// NewRuntime returns a runtime that builds plugins from cat and serves the
// services of table. It serves nothing until Apply.
func NewRuntime(cat *Catalog, table *ServiceTable, log *slog.Logger) *Runtime {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runtime{cat: cat, table: table, log: log, budget: NewBudget(int64(DefaultLimits().MaxBuffered)), gate: newConnGate()}
	r.gate.setLimits(DefaultLimits())
	return r
}

// Generation returns the number of the running generation (0 before the
// first Apply).
func (r *Runtime) Generation() uint64 {
	if g := r.cur.Load(); g != nil {
		return g.id
	}
	return 0
}

// Endpoints returns the addresses the running generation listens on, with
// ports that were chosen by the system filled in.
func (r *Runtime) Endpoints() []Endpoint {
	if g := r.cur.Load(); g != nil {
		return g.endpoints()
	}
	return nil
}

// Config returns the running generation's configuration, or nil.
func (r *Runtime) Config() *Config {
	if g := r.cur.Load(); g != nil {
		return g.cfg
	}
	return nil
}

// Apply makes cfg the running configuration; see Runtime. It returns once
// the connections of the previous generation's listeners that the new one
// does not keep have drained (bounded by the drain timeout) and closed.
// The previous generation's plugins are cleaned up once its last call has
// ended: before Apply returns, unless calls that started on it (long-lived
// streams) still run on connections the new generation kept.
func (r *Runtime) Apply(ctx context.Context, cfg *Config) error {
	drained, err := r.Swap(ctx, cfg)
	if err == nil {
		<-drained
	}
	return err
}

// Swap is Apply without the wait: it returns once the new generation runs
// (or the configuration was rejected), and the channel it returns is closed
// once the generation it replaced has drained as Apply describes.
func (r *Runtime) Swap(ctx context.Context, cfg *Config) (drained <-chan struct{}, err error) {
	old, g, err := r.swapIn(ctx, cfg)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	if old == nil {
		close(done)
		return done, nil
	}
	go func() {
		defer close(done)
		r.retire(old, g)
	}()
	return done, nil
}

// swapIn builds, starts and swaps in the generation of cfg, and returns the
// one it replaced (still to be retired, and already counted in r.retiring).
func (r *Runtime) swapIn(ctx context.Context, cfg *Config) (old, g *generation, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, nil, errors.New("kernel: runtime is shut down")
	}
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	cur := r.cur.Load()
	g, err = r.build(r.seq+1, cfg, cur)
	if err != nil {
		return nil, nil, err
	}
	finish, err := r.prepareFollowers(cfg)
	if err != nil {
		g.discard(cur)
		return nil, nil, err
	}
	if err := r.start(ctx, g, cur); err != nil {
		g.discard(cur)
		finish(false)
		return nil, nil, err
	}
	r.seq = g.id
	// Swap: calls on carried connections take the new chains, and new
	// connections on every listener reach the new generation.
	for _, l := range g.listeners {
		l.disp.t.Store(g.table)
		l.shared.handler.Store(&serverBox{l.server})
	}
	r.cur.Store(g)
	r.budget.SetLimit(int64(cfg.Server.Limits.WithDefaults().MaxBuffered))
	r.gate.setLimits(cfg.Server.Limits.WithDefaults())
	r.reclaiming.Do(func() { go r.gate.reclaimLoop(r.stopping()) })
	finish(true)
	r.log.Info("generation running", "generation", g.id, "listeners", g.describe())
	if cur != nil {
		r.viewMu.Lock()
		r.draining = append(r.draining, cur)
		r.viewMu.Unlock()
		r.retiring.Add(1)
	}
	return cur, g, nil
}

// Stopping returns a channel that is closed when Shutdown begins: services
// such as health checking report NOT_SERVING from then on, while calls in
// flight drain.
func (r *Runtime) Stopping() <-chan struct{} { return r.stopping() }

func (r *Runtime) stopping() chan struct{} {
	r.stopInit.Do(func() { r.stopCh = make(chan struct{}) })
	return r.stopCh
}

// Shutdown drains and stops the running generation, waits for the
// generations still draining, and cleans up every plugin instance; Apply
// fails afterwards. ctx bounds the wait: when it ends, connections close
// and the plugins of generations whose calls have not ended are cleaned up
// all the same.
func (r *Runtime) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.stoppingOnce.Do(func() { close(r.stopping()) })
	last := r.cur.Swap(nil)
	if last != nil {
		r.viewMu.Lock()
		r.draining = append(r.draining, last)
		r.viewMu.Unlock()
		r.retiring.Add(1)
	}
	r.mu.Unlock()
	var err error
	if last != nil {
		err = r.drain(ctx, last, nil)
	}
	done := make(chan struct{})
	go func() { r.retiring.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		// Generations still waiting for their last calls: those calls'
		// connections are closed by now, or will be.
		r.viewMu.Lock()
		left := slices.Clone(r.draining)
		r.viewMu.Unlock()
		for _, g := range left {
			g.insts.cleanup()
		}
	}
	return err
}

// build instantiates every plugin of a generation; nothing is listening
// yet. A listener that cur serves with the same settings is carried over
// instead of built. On error what was built is cleaned up.
func (r *Runtime) build(id uint64, cfg *Config, cur *generation) (_ *generation, err error) {
	g := &generation{id: id, cfg: cfg}
	defer func() {
		if err != nil {
			g.discard(cur)
		}
	}()
	log := r.log.With("generation", id)
	bc := BuildContext{Logger: log, Generation: id, Limits: cfg.Server.Limits.WithDefaults(), Service: cfg.Service}

	var codecs []Codec
	for i, name := range cfg.Server.Codecs {
		key := fmt.Sprintf("server.codecs[%d]", i)
		c, err := build[Codec](r.cat, bc, KindCodec, name, key, config.Raw{})
		if err != nil {
			return nil, err
		}
		g.insts.own(KindCodec, name, key, c)
		codecs = append(codecs, c)
	}
	var ics []Interceptor
	for i, pc := range cfg.Server.Interceptors {
		path := fmt.Sprintf("server.interceptors[%d]", i)
		ic, err := build[Interceptor](r.cat, bc, KindInterceptor, pc.Use, path+".use", withPath(pc.Options, path))
		if err != nil {
			return nil, err
		}
		g.insts.own(KindInterceptor, pc.Use, path, ic)
		if ic.Server == nil && ic.StreamServer == nil {
			return nil, fmt.Errorf("config: %s.use: interceptor %q has no server side", path, pc.Use)
		}
		ics = append(ics, ic)
	}
	g.table = newTable(r.table, ics, codecs, cfg.Server.Limits, log, r.budget)
	g.table.gate = r.gate

	if g.resolver, err = build[Resolver](r.cat, bc, KindRegistry, cfg.Registry.Use, "registry.use", withPath(cfg.Registry.Options, "registry")); err != nil {
		return nil, err
	}
	g.insts.own(KindRegistry, cfg.Registry.Use, "registry", g.resolver)

	carried := map[string]*boundListener{}
	if cur != nil {
		for _, l := range cur.listeners {
			if l.serveKey != "" {
				carried[l.serveKey] = l
			}
		}
	}
	for i, lc := range cfg.Listen {
		path := fmt.Sprintf("listen[%d]", i)
		key, serveKey := listenerKeys(cfg, lc)
		if l := carried[serveKey]; l != nil && serveKey != "" {
			g.listeners = append(g.listeners, l)
			continue
		}
		l := &boundListener{key: key, serveKey: serveKey, cfg: lc, disp: new(Dispatcher)}
		l.disp.t.Store(g.table)
		g.listeners = append(g.listeners, l) // before building, so that discard cleans up a half-built one
		tcfg, tpath := cfg.tlsFor(lc.TLS, path+".tls")
		lbc := bc
		if lbc.TLS, err = buildTLS(r.cat, bc, tcfg, tpath, true, &l.insts); err != nil {
			return nil, err
		}
		l.disp.tls = lbc.TLS
		tr, err := build[Transport](r.cat, lbc, KindTransport, lc.Transport, path+".transport", withPath(lc.Options, path))
		if err != nil {
			return nil, err
		}
		l.insts.own(KindTransport, lc.Transport, path, tr)
		l.transport, l.scheme = tr, schemeOf(lc.Transport, tr)
		if l.server, err = r.buildServer(l, lbc, lc, path, g.cfg.Server.Limits.WithDefaults()); err != nil {
			return nil, err
		}
		if lbc.TLS == nil && !isLocal(lc.Transport, lc.Address) {
			log.Warn("listener is plaintext (tls.mode off) on a network address: calls and identities on it are not protected", "listener", path, "address", lc.Address)
		}
		l.endpoint = Endpoint{Address: l.scheme + "://" + lc.Address, Labels: cfg.Instance.Labels, Weight: cfg.Instance.Weight}
	}
	return g, nil
}

// listenerKeys returns what identifies listener lc of cfg: key, the socket
// (transport, address, transport options), which a new generation takes
// over without closing the port; and serveKey, key plus everything the
// protocol server was built from (protocols and their options, TLS, server
// limits), which must be unchanged for its connections to be kept. An
// ephemeral port is never the same listener twice: both are empty.
func listenerKeys(cfg *Config, lc ListenConfig) (key, serveKey string) {
	if strings.HasSuffix(lc.Address, ":0") {
		return "", ""
	}
	key = lc.Transport + "://" + lc.Address + " " + fmt.Sprint(lc.Options.Tree)
	tls := cfg.TLS
	if lc.TLS != nil {
		tls = *lc.TLS
	}
	popts := map[string]any{}
	for name, raw := range lc.ProtocolOptions {
		popts[name] = raw.Tree
	}
	serveKey = fmt.Sprint(key, " ", lc.Protocols, " ", popts, " ", tls, " ", cfg.Server.Limits.WithDefaults())
	return key, serveKey
}

// buildServer builds the protocols of listener l. Several protocols share
// the listener through a sniffer, so each must be a Matcher. With TLS (and
// a transport that does not secure itself), connections are handshaken
// first, offering the protocols' ALPN IDs.
func (r *Runtime) buildServer(l *boundListener, bc BuildContext, lc ListenConfig, path string, lim Limits) (ServerConn, error) {
	sn := &sniffer{timeout: lim.HandshakeTimeout}
	bc.Protocols = lc.Protocols
	var protos []Protocol
	var srv ServerConn
	for j, name := range lc.Protocols {
		key := fmt.Sprintf("%s.protocols[%d]", path, j)
		proto, err := build[Protocol](r.cat, bc, KindProtocol, name, key, lc.protocolOptions(name, path))
		if err != nil {
			return nil, err
		}
		l.insts.own(KindProtocol, name, key, proto)
		protos = append(protos, proto)
		if len(lc.Protocols) == 1 {
			srv = proto.NewServer(l.disp)
			break
		}
		m, ok := proto.(Matcher)
		if !ok {
			return nil, config.FieldError(key, name, "a protocol that recognises its connections by their first bytes, to share a listener (this one must have a listener of its own)")
		}
		sn.matchers = append(sn.matchers, m)
		var ids []string
		if a, ok := proto.(ALPNer); ok {
			ids = a.ALPN()
		}
		sn.alpn = append(sn.alpn, ids)
		sn.servers = append(sn.servers, proto.NewServer(l.disp))
	}
	if srv == nil {
		srv = sn
	}
	if _, own := l.transport.(TLSTransport); bc.TLS != nil && !own {
		srv = &tlsServer{ServerConn: srv, conf: bc.TLS.ServerConfig(alpnOf(protos)), mode: bc.TLS.Mode, timeout: lim.HandshakeTimeout, log: bc.Logger}
	}
	return srv, nil
}

// isLocal reports whether a listener on transport at address is reachable
// from this machine only: a Unix socket, or a loopback address.
func isLocal(transport, address string) bool {
	if transport == "uds" {
		return true
	}
	host := hostOf(address)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withPath gives a plugin's options the key path they were found under, so
// that a plugin without options still reports errors at the right place.
func withPath(raw config.Raw, path string) config.Raw {
	if raw.Path == "" {
		raw.Path = path + ".options"
	}
	return raw
}

// discard cleans up a generation that never ran: its own plugins and the
// listeners it built (not those it would have carried over from cur).
func (g *generation) discard(cur *generation) {
	for _, l := range g.listeners {
		if cur == nil || !slices.Contains(cur.listeners, l) {
			l.insts.cleanup()
		}
	}
	g.insts.cleanup()
}

// start runs the new plugins' start steps, then opens the generation's new
// listeners, taking over cur's sockets where they are unchanged, and
// registers its endpoints.
func (r *Runtime) start(ctx context.Context, g, cur *generation) error {
	carried := func(l *boundListener) bool { return cur != nil && slices.Contains(cur.listeners, l) }
	if err := g.insts.start(ctx); err != nil {
		return err
	}
	for _, l := range g.listeners {
		if !carried(l) {
			if err := l.insts.start(ctx); err != nil {
				return err
			}
		}
	}
	reusable := map[string]*sharedListener{}
	if cur != nil {
		for _, l := range cur.listeners {
			if l.key != "" {
				reusable[l.key] = l.shared
			}
		}
	}
	var opened []*sharedListener
	for i, l := range g.listeners {
		if carried(l) {
			continue
		}
		if sl, ok := reusable[l.key]; ok && l.key != "" {
			l.shared = sl
			l.endpoint.Address = l.scheme + "://" + sl.ln.Addr().String()
			continue
		}
		ln, err := l.transport.Listen(ctx, l.cfg.Address)
		if err != nil {
			for _, sl := range opened {
				sl.close()
			}
			return fmt.Errorf("config: listen[%d]: %s %s: %w", i, l.cfg.Transport, l.cfg.Address, err)
		}
		l.shared = &sharedListener{ln: ln, done: make(chan struct{}), log: r.log, gate: r.gate}
		l.endpoint.Address = l.scheme + "://" + ln.Addr().String()
		opened = append(opened, l.shared)
	}
	for _, sl := range opened {
		go sl.serve()
	}
	if reg, ok := g.resolver.(Registry); ok && len(g.listeners) > 0 {
		if err := reg.Register(ctx, g.cfg.Service, g.endpoints()); err != nil {
			for _, sl := range opened {
				sl.close()
			}
			return fmt.Errorf("kernel: register %s: %w", g.cfg.Service, err)
		}
	}
	return nil
}

// retire drains the generation that next replaced and cleans it up.
func (r *Runtime) retire(old, next *generation) {
	ctx, cancel := context.WithTimeout(context.Background(), old.cfg.Server.DrainTimeout)
	defer cancel()
	if err := r.drain(ctx, old, next); err != nil {
		r.log.Warn("generation drained with errors", "generation", old.id, "err", err)
	}
}

// drain deregisters old's endpoints (after server.handover, when next
// publishes new ones), tells the connections of old's listeners that next
// does not carry to go away, waits for their calls, closes the sockets
// next does not take over, and cleans up their plugins. old's own plugins
// are cleaned up once the calls still running its chains on connections
// next carried have ended, which may be after drain returns (not bounded
// by ctx: a long-lived stream keeps its generation's plugins until it
// ends). With next nil (Shutdown) it waits for every call within ctx.
func (r *Runtime) drain(ctx context.Context, old, next *generation) error {
	var keptListeners []*boundListener
	keptSockets := map[*sharedListener]bool{}
	if next != nil {
		keptListeners = next.listeners
		for _, l := range next.listeners {
			keptSockets[l.shared] = true
		}
	}
	if reg, ok := old.resolver.(Registry); ok && len(old.listeners) > 0 {
		// Clients that watch the registry see the new endpoints within the
		// handover; with a registry nobody watches, waiting would only
		// delay the reload.
		if _, watched := old.resolver.(Watcher); watched && next != nil && next.cfg.Server.Handover > 0 && movesEndpoints(old, next) {
			t := time.NewTimer(next.cfg.Server.Handover)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if err := reg.Deregister(ctx, old.cfg.Service, old.endpoints()); err != nil {
			r.log.Warn("deregister failed", "service", old.cfg.Service, "err", err)
		}
	}
	start := time.Now()
	var moved []*boundListener
	for _, l := range old.listeners {
		if !slices.Contains(keptListeners, l) {
			moved = append(moved, l)
		}
	}
	r.log.Debug("generation draining", "generation", old.id, "listeners_kept", len(old.listeners)-len(moved), "listeners_draining", len(moved))
	var wg sync.WaitGroup
	errs := make([]error, len(moved))
	for i, l := range moved {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.server.Shutdown(ctx)
		}()
	}
	wg.Wait()
	// Sockets close last: until then a client that still dials the old
	// address is told to go away, which it retries, instead of failing.
	for _, l := range moved {
		if !keptSockets[l.shared] && l.shared != nil {
			l.shared.close()
		}
		l.insts.cleanup()
	}
	// The plugins of old are cleaned up once the last call running its
	// chains has ended: at once, unless next carried connections on which
	// calls (long-lived streams) that started on old still run.
	idle := old.table.retire()
	finish := func() {
		old.insts.cleanup()
		r.viewMu.Lock()
		if i := slices.Index(r.draining, old); i >= 0 {
			r.draining = slices.Delete(r.draining, i, i+1)
		}
		r.viewMu.Unlock()
		r.log.Info("generation stopped", "generation", old.id, "drain", time.Since(start).Round(time.Millisecond))
		r.retiring.Done()
	}
	if next == nil {
		select {
		case <-idle:
		case <-ctx.Done():
		}
		finish()
	} else {
		go func() {
			<-idle
			finish()
		}()
	}
	return errors.Join(errs...)
}

// movesEndpoints reports whether next publishes an endpoint that old did
// not: clients then have somewhere new to connect to.
func movesEndpoints(old, next *generation) bool {
	had := make(map[string]bool, len(old.listeners))
	for _, e := range old.endpoints() {
		had[e.Address] = true
	}
	for _, e := range next.endpoints() {
		if !had[e.Address] {
			return true
		}
	}
	return false
}

func (g *generation) endpoints() []Endpoint {
	eps := make([]Endpoint, len(g.listeners))
	for i, l := range g.listeners {
		eps[i] = l.endpoint
	}
	return eps
}

func (g *generation) describe() string {
	var addrs []string
	for _, ep := range g.endpoints() {
		addrs = append(addrs, ep.Address)
	}
	return strings.Join(addrs, ", ")
}

func (sl *sharedListener) serve() {
	defer close(sl.done)
	var delay time.Duration
	for {
		conn, err := sl.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			sl.log.Warn("accept failed", "addr", sl.ln.Addr().String(), "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		b := sl.handler.Load()
		if b == nil {
			conn.Close()
			continue
		}
		release, ok := sl.gate.admit(conn)
		if !ok {
			conn.Close()
			continue
		}
		go func() {
			defer release()
			b.s.ServeConn(conn)
		}()
	}
}

func (sl *sharedListener) close() {
	if sl.ln == nil {
		return
	}
	sl.ln.Close()
	if sl.done != nil {
		<-sl.done
	}
}

// Module provides the Catalog (from the factories plugins contribute), the
// ServiceTable (from the services modules contribute) and the Runtime.
var Module = fx.Module("kernel",
	fx.Provide(
		fx.Annotate(NewCatalog, fx.ParamTags(FactoryGroup)),
		fx.Annotate(NewServiceTable, fx.ParamTags(ServiceGroup)),
		NewRuntime,
	),
)
