package kernel

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
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel/config"
)

// Runtime runs configuration generations. Apply builds a new generation,
// starts it beside the running one, swaps it in, drains the old one and
// stops it; if any step before the swap fails, the running generation keeps
// serving and Apply returns the error. Listeners whose transport, address and
// options are unchanged are handed from one generation to the next, so their
// port never closes. Runtime is safe for concurrent use; applies are
// serialised.
type Runtime struct {
	cat   *Catalog
	table *ServiceTable
	log   *slog.Logger

	mu     sync.Mutex                 // serialises Apply and Shutdown
	cur    atomic.Pointer[generation] // written under mu; read freely
	seq    uint64
	closed bool

	followers []Follower // told of each configuration applied (see Follow)

	stopInit, stoppingOnce sync.Once
	stopCh                 chan struct{} // closed when Shutdown begins
}

type generation struct {
	id        uint64
	cfg       *Config
	disp      *Dispatcher
	resolver  Resolver
	listeners []*boundListener
	closers   []io.Closer
}

type boundListener struct {
	key       string
	transport Transport
	scheme    string // of the endpoint URL
	shared    *sharedListener
	server    ServerConn
	endpoint  Endpoint
}

// sharedListener accepts connections and hands each to the server of the
// generation that currently owns it.
type sharedListener struct {
	ln      net.Listener
	handler atomic.Pointer[serverBox]
	done    chan struct{}
	log     *slog.Logger
}

type serverBox struct{ s ServerConn }

// NewRuntime returns a runtime that builds plugins from cat and serves the
// services of table. It serves nothing until Apply.
func NewRuntime(cat *Catalog, table *ServiceTable, log *slog.Logger) *Runtime {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runtime{cat: cat, table: table, log: log}
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
// the previous generation has drained (bounded by its drain timeout) and
// stopped.
func (r *Runtime) Apply(ctx context.Context, cfg *Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("kernel: runtime is shut down")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.seq++
	g, err := r.build(r.seq, cfg)
	if err != nil {
		r.seq--
		return err
	}
	finish, err := r.prepareFollowers(cfg)
	if err != nil {
		r.seq--
		g.stop()
		return err
	}
	if err := r.start(ctx, g); err != nil {
		r.seq--
		g.stop()
		finish(false)
		return err
	}
	old := r.cur.Load()
	// Swap: new connections on every listener now reach the new generation.
	for _, l := range g.listeners {
		l.shared.handler.Store(&serverBox{l.server})
	}
	r.cur.Store(g)
	finish(true)
	r.log.Info("generation running", "generation", g.id, "listeners", g.describe())
	if old != nil {
		r.retire(old, g)
	}
	return nil
}

// Stopping returns a channel that is closed when Shutdown begins: services
// such as health checking report NOT_SERVING from then on, while calls in
// flight drain.
func (r *Runtime) Stopping() <-chan struct{} { return r.stopping() }

func (r *Runtime) stopping() chan struct{} {
	r.stopInit.Do(func() { r.stopCh = make(chan struct{}) })
	return r.stopCh
}

// Shutdown drains and stops the running generation; Apply fails afterwards.
func (r *Runtime) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.stoppingOnce.Do(func() { close(r.stopping()) })
	old := r.cur.Swap(nil)
	if old == nil {
		return nil
	}
	return r.drain(ctx, old, nil)
}

// build instantiates every plugin of a generation; nothing is listening yet.
func (r *Runtime) build(id uint64, cfg *Config) (_ *generation, err error) {
	g := &generation{id: id, cfg: cfg}
	defer func() {
		if err != nil {
			g.stop() // close what was built before the failure
		}
	}()
	log := r.log.With("generation", id)
	bc := BuildContext{Logger: log, Generation: id, Limits: cfg.Server.Limits.WithDefaults()}

	var codecs []Codec
	for i, name := range cfg.Server.Codecs {
		c, err := build[Codec](r.cat, bc, KindCodec, name, fmt.Sprintf("server.codecs[%d]", i), config.Raw{})
		if err != nil {
			return nil, err
		}
		g.own(c)
		codecs = append(codecs, c)
	}
	var ics []Interceptor
	for i, pc := range cfg.Server.Interceptors {
		path := fmt.Sprintf("server.interceptors[%d]", i)
		ic, err := build[Interceptor](r.cat, bc, KindInterceptor, pc.Use, path+".use", withPath(pc.Options, path))
		if err != nil {
			return nil, err
		}
		if ic.Server == nil && ic.StreamServer == nil {
			return nil, fmt.Errorf("config: %s.use: interceptor %q has no server side", path, pc.Use)
		}
		g.own(ic)
		ics = append(ics, ic)
	}
	g.disp = NewDispatcher(r.table, ics, codecs, cfg.Server.Limits, log)

	if g.resolver, err = build[Resolver](r.cat, bc, KindRegistry, cfg.Registry.Use, "registry.use", withPath(cfg.Registry.Options, "registry")); err != nil {
		return nil, err
	}
	g.own(g.resolver)

	for i, lc := range cfg.Listen {
		path := fmt.Sprintf("listen[%d]", i)
		tr, err := build[Transport](r.cat, bc, KindTransport, lc.Transport, path+".transport", withPath(lc.Options, path))
		if err != nil {
			return nil, err
		}
		g.own(tr)
		server, err := r.buildServer(g, bc, lc, path)
		if err != nil {
			return nil, err
		}
		key := lc.Transport + "://" + lc.Address + " " + fmt.Sprint(lc.Options.Tree)
		if strings.HasSuffix(lc.Address, ":0") {
			key = "" // an ephemeral port is never the same listener twice
		}
		g.listeners = append(g.listeners, &boundListener{
			key:       key,
			transport: tr,
			server:    server,
			scheme:    schemeOf(lc.Transport, tr),
			endpoint:  Endpoint{Address: schemeOf(lc.Transport, tr) + "://" + lc.Address, Labels: cfg.Instance.Labels, Weight: cfg.Instance.Weight},
		})
	}
	return g, nil
}

// buildServer builds the protocols of listener lc. Several protocols share
// the listener through a sniffer, so each must be a Matcher.
func (r *Runtime) buildServer(g *generation, bc BuildContext, lc ListenConfig, path string) (ServerConn, error) {
	sn := &sniffer{timeout: g.cfg.Server.Limits.WithDefaults().HandshakeTimeout}
	for j, name := range lc.Protocols {
		key := fmt.Sprintf("%s.protocols[%d]", path, j)
		proto, err := build[Protocol](r.cat, bc, KindProtocol, name, key, lc.protocolOptions(name, path))
		if err != nil {
			return nil, err
		}
		g.own(proto)
		if len(lc.Protocols) == 1 {
			return proto.NewServer(g.disp), nil
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
		sn.servers = append(sn.servers, proto.NewServer(g.disp))
	}
	return sn, nil
}

// withPath gives a plugin's options the key path they were found under, so
// that a plugin without options still reports errors at the right place.
func withPath(raw config.Raw, path string) config.Raw {
	if raw.Path == "" {
		raw.Path = path + ".options"
	}
	return raw
}

func (g *generation) own(v any) {
	if c, ok := v.(io.Closer); ok {
		g.closers = append(g.closers, c)
	}
}

// start opens the generation's listeners, reusing the running generation's
// where they are unchanged.
func (r *Runtime) start(ctx context.Context, g *generation) error {
	reusable := map[string]*sharedListener{}
	if cur := r.cur.Load(); cur != nil {
		for _, l := range cur.listeners {
			if l.key != "" {
				reusable[l.key] = l.shared
			}
		}
	}
	var opened []*sharedListener
	for i, l := range g.listeners {
		lc := g.cfg.Listen[i]
		if sl, ok := reusable[l.key]; ok && l.key != "" {
			l.shared = sl
			l.endpoint.Address = l.scheme + "://" + sl.ln.Addr().String()
			continue
		}
		ln, err := l.transport.Listen(ctx, lc.Address)
		if err != nil {
			for _, sl := range opened {
				sl.close()
			}
			return fmt.Errorf("config: listen[%d]: %s %s: %w", i, lc.Transport, lc.Address, err)
		}
		l.shared = &sharedListener{ln: ln, done: make(chan struct{}), log: r.log}
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

// retire drains the generation that next replaced and stops it.
func (r *Runtime) retire(old, next *generation) {
	ctx, cancel := context.WithTimeout(context.Background(), old.cfg.Server.DrainTimeout)
	defer cancel()
	if err := r.drain(ctx, old, next); err != nil {
		r.log.Warn("generation drained with errors", "generation", old.id, "err", err)
	}
}

// drain deregisters old's endpoints (after server.handover, when next
// publishes new ones), tells old's connections to go away,
// waits for their calls, closes old's listeners that next does not reuse,
// and stops old's plugins.
func (r *Runtime) drain(ctx context.Context, old, next *generation) error {
	kept := map[*sharedListener]bool{}
	if next != nil {
		for _, l := range next.listeners {
			kept[l.shared] = true
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
	var wg sync.WaitGroup
	errs := make([]error, len(old.listeners))
	for i, l := range old.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.server.Shutdown(ctx)
		}()
	}
	wg.Wait()
	// Listeners close last: until then a client that still dials the old
	// address is told to go away, which it retries, instead of failing.
	for _, l := range old.listeners {
		if !kept[l.shared] {
			l.shared.close()
		}
	}
	old.stop()
	r.log.Info("generation stopped", "generation", old.id, "drain", time.Since(start).Round(time.Millisecond))
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

func (g *generation) stop() {
	for i := len(g.closers) - 1; i >= 0; i-- {
		g.closers[i].Close()
	}
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
		go b.s.ServeConn(conn)
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
