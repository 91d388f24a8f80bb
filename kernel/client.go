package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// ClientCall is one outgoing unary call as a Session sees it. The client
// owns it; a Session must not retain it after Invoke returns.
type ClientCall struct {
	// Method is the full name "/pkg.Service/Method".
	Method string
	// Codec encodes the request and decodes the response.
	Codec Codec
	// Metadata is sent with the request; it may be nil.
	Metadata metadata.MD
	// Header and Trailer, when not nil, receive the response metadata.
	Header, Trailer *metadata.MD
	// Schema is the fingerprint of the method's messages when Codec is a
	// SchemaCodec, sent so that the server can check it (see SchemaKey).
	Schema string

	// Idempotent says the call is safe to send again after it may have
	// run (see Idempotent).
	Idempotent bool

	req, resp any // message samples for Schema, from StreamTypes

	pick  PickInfo      // what the balancer and router see
	dones []func(error) // the guards' done functions of the attempt
}

// CallOption changes one call.
type CallOption func(*ClientCall)

// Header stores the response header metadata of the call in md.
func Header(md *metadata.MD) CallOption { return func(c *ClientCall) { c.Header = md } }

// Trailer stores the trailer metadata of the call in md.
func Trailer(md *metadata.MD) CallOption { return func(c *ClientCall) { c.Trailer = md } }

// Idempotent marks a call as safe to send again after it may have run, so
// that a retry interceptor may retry it; generated clients can pass it for
// methods whose idempotency_level is IDEMPOTENT or NO_SIDE_EFFECTS.
func Idempotent() CallOption { return markIdempotent }

func markIdempotent(c *ClientCall) { c.Idempotent = true }

// IsIdempotent reports whether the call whose context is ctx (inside a
// client interceptor) was made with the Idempotent option.
func IsIdempotent(ctx context.Context) bool {
	c, ok := optionsOf(ctx)
	return ok && c.Idempotent
}

// ResponseMetadata returns where the call whose context is ctx (inside a
// client interceptor) stores its response header and trailer, as the Header
// and Trailer options set them; nil when it does not.
func ResponseMetadata(ctx context.Context) (header, trailer *metadata.MD) {
	c, _ := optionsOf(ctx)
	return c.Header, c.Trailer
}

// WithCallOptions returns ctx in which the call (inside a client
// interceptor) has opts after its own options: an interceptor that sends a
// call several times at once gives each attempt its own Header and Trailer
// this way.
func WithCallOptions(ctx context.Context, opts ...CallOption) context.Context {
	prev, _ := ctx.Value(optsKey{}).([]CallOption)
	all := make([]CallOption, 0, len(prev)+len(opts))
	return withCallOptions(ctx, append(append(all, prev...), opts...))
}

// optionsOf applies the call options in ctx to a blank call.
func optionsOf(ctx context.Context) (ClientCall, bool) {
	var c ClientCall
	opts, ok := ctx.Value(optsKey{}).([]CallOption)
	for _, o := range opts {
		o(&c)
	}
	return c, ok
}

// ClientOptions configure a Client. Target, Protocol, Codec and a transport
// for each scheme the target resolves to are required.
type ClientOptions struct {
	// Target is a service name resolved by Resolver, or an endpoint address
	// such as "tcp://127.0.0.1:7443" when Resolver is nil.
	Target string
	// Resolver finds the target's endpoints; nil means Target is an address.
	Resolver Resolver
	// Transports dial endpoints by scheme ("tcp", "unix", "quic").
	Transports map[string]Transport
	// Protocol is the wire protocol the client speaks.
	Protocol Protocol
	// Codec encodes messages (the content subtype of every call).
	Codec Codec
	// ConnsPerEndpoint is how many multiplexed connections the client opens
	// to each endpoint; calls are spread over them. Default 1: on loopback
	// with 2 cores one connection batches writes best (echobench, 100
	// callers: axon/raw-mux 0.72-0.76 with 1, 0.56-0.69 with 2). Calls
	// beyond the server's stream limit per connection wait for a slot.
	ConnsPerEndpoint int
	// DialTimeout bounds one dial; the call's deadline bounds it too.
	// Default 5s.
	DialTimeout time.Duration
	// Limits bound what a server can make the client allocate.
	Limits Limits
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger

	// The fields below are the client's policy: Reconfigure changes them
	// while calls run.

	// Timeout is the deadline given to calls whose context has none; zero
	// means none.
	Timeout time.Duration
	// MethodTimeouts caps the time of calls to a method, by full name
	// ("/pkg.Service/Method"): a call gets the earlier of its own deadline
	// and now plus the method's timeout.
	MethodTimeouts map[string]time.Duration
	// Interceptors wrap every call, outermost first: their unary client
	// sides wrap unary calls, their stream client sides streaming calls,
	// and their guards see each attempt once its endpoint is picked.
	Interceptors []Interceptor
	// Balancer picks an endpoint per call; nil means RoundRobin.
	Balancer Balancer
	// Router narrows the endpoints of a call; nil means all endpoints.
	Router Router
	// Outlier configures outlier ejection; the zero value turns it off.
	Outlier OutlierConfig
}

// maxRefusedRetries bounds how often one call is sent again after servers
// refused it without running it.
const maxRefusedRetries = 4

// Client sends calls to one target over a few shared, multiplexed
// connections per endpoint. It is safe for concurrent use; Close releases
// its connections.
type Client struct {
	o    ClientOptions
	pool sync.Pool // *ClientCall
	pol  atomic.Pointer[policy]

	mu       sync.Mutex
	eps      []*Backend
	resolved time.Time
	watched  bool // a Watcher keeps eps up to date
	closed   bool
	next     atomic.Uint64      // spreads calls over an endpoint's connections
	stop     context.CancelFunc // ends the watch
}

// policy is the part of a client that Reconfigure replaces atomically.
type policy struct {
	invoke   UnaryInvoker
	stream   Streamer
	balancer Balancer
	router   Router
	guards   []Guard
	latency  bool
	timeout  time.Duration
	timeouts map[string]time.Duration
	outlier  OutlierConfig
}

type connSlot struct {
	dialing chan struct{} // a one-token lock that serialises dials; a caller waits for it only until its ctx is done
	sess    atomic.Pointer[sessionBox]
}

type sessionBox struct{ s Session }

// NewClient returns a client for o.Target. It dials lazily, on the first
// call to each endpoint.
func NewClient(o ClientOptions) (*Client, error) {
	if o.Target == "" {
		return nil, errors.New("kernel: client: no target")
	}
	if o.Protocol == nil || o.Codec == nil {
		return nil, errors.New("kernel: client: protocol and codec are required")
	}
	if o.ConnsPerEndpoint <= 0 {
		o.ConnsPerEndpoint = 1
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Limits = o.Limits.WithDefaults()
	c := &Client{o: o, stop: func() {}}
	c.pool.New = func() any { return new(ClientCall) }
	c.pol.Store(c.newPolicy(o))
	if w, ok := o.Resolver.(Watcher); ok {
		var ctx context.Context
		ctx, c.stop = context.WithCancel(context.Background())
		go c.watch(ctx, w)
	}
	return c, nil
}

// newPolicy builds the swappable part of the client from o.
func (c *Client) newPolicy(o ClientOptions) *policy {
	p := &policy{balancer: o.Balancer, router: o.Router, timeout: o.Timeout, outlier: o.Outlier}
	if p.balancer == nil {
		p.balancer = RoundRobin()
	}
	if lb, ok := p.balancer.(LatencyBalancer); ok {
		p.latency = lb.TracksLatency()
	}
	if len(o.MethodTimeouts) > 0 {
		p.timeouts = o.MethodTimeouts
	}
	if p.outlier.ConsecutiveFailures > 0 {
		d := DefaultOutlierConfig()
		if p.outlier.BaseEjection <= 0 {
			p.outlier.BaseEjection = d.BaseEjection
		}
		if p.outlier.MaxEjection <= 0 {
			p.outlier.MaxEjection = d.MaxEjection
		}
	}
	var unary []UnaryClientInterceptor
	var streams []StreamClientInterceptor
	for _, ic := range o.Interceptors {
		if ic.Client != nil {
			unary = append(unary, ic.Client)
		}
		if ic.StreamClient != nil {
			streams = append(streams, ic.StreamClient)
		}
		if ic.Guard != nil {
			p.guards = append(p.guards, ic.Guard)
		}
	}
	p.invoke = chainClient(unary, func(ctx context.Context, method string, req, resp any) error {
		return c.send(ctx, p, method, req, resp)
	})
	p.stream = chainStreamClient(streams, func(ctx context.Context, method string) (ClientStream, error) {
		return c.open(ctx, p, method)
	})
	return p
}

// Reconfigure replaces the client's policy (Timeout, MethodTimeouts,
// Interceptors, Balancer, Router, Outlier; o's other fields are ignored)
// while calls run: calls that started keep the policy they started with,
// new calls take the new one. Connections are kept.
func (c *Client) Reconfigure(o ClientOptions) {
	p := c.newPolicy(o)
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.router != nil && c.eps != nil {
		p.router.Update(c.eps)
	}
	c.pol.Store(p)
}

// Invoke calls method ("/pkg.Service/Method") with req and decodes the
// response into resp. It returns nil or a *status.Error, and never blocks
// past ctx's deadline.
func (c *Client) Invoke(ctx context.Context, method string, req, resp any, opts ...CallOption) error {
	p := c.pol.Load()
	if p.timeout > 0 || p.timeouts != nil {
		var cancel context.CancelFunc
		ctx, cancel = p.withTimeout(ctx, method)
		if cancel != nil {
			defer cancel()
		}
	}
	if len(opts) == 0 {
		return p.invoke(ctx, method, req, resp)
	}
	return p.invoke(withCallOptions(ctx, opts), method, req, resp)
}

// withTimeout applies the method's timeout, or the default timeout to a
// call without a deadline. cancel is nil when ctx is unchanged.
func (p *policy) withTimeout(ctx context.Context, method string) (context.Context, context.CancelFunc) {
	dl, has := ctx.Deadline()
	if d, ok := p.timeouts[method]; ok && d > 0 {
		if !has || time.Until(dl) > d {
			return context.WithTimeout(ctx, d)
		}
		return ctx, nil
	}
	if !has && p.timeout > 0 {
		return context.WithTimeout(ctx, p.timeout)
	}
	return ctx, nil
}

type optsKey struct{}

func withCallOptions(ctx context.Context, opts []CallOption) context.Context {
	return context.WithValue(ctx, optsKey{}, opts)
}

// send is the innermost invoker: pick an endpoint and a connection, send,
// and resend a call that a server refused before running it.
func (c *Client) send(ctx context.Context, p *policy, method string, req, resp any) error {
	call := c.pool.Get().(*ClientCall)
	dones := call.dones[:0]
	*call = ClientCall{Method: method, Codec: c.o.Codec, Metadata: metadata.FromOutgoingContext(ctx), dones: dones}
	if opts, ok := ctx.Value(optsKey{}).([]CallOption); ok {
		for _, o := range opts {
			o(call)
		}
	}
	call.pick = PickInfo{Method: method, Metadata: call.Metadata}
	defer func() {
		dones := call.dones[:0]
		clear(call.dones[:cap(call.dones)])
		*call = ClientCall{dones: dones}
		c.pool.Put(call)
	}()
	if sc, ok := call.Codec.(SchemaCodec); ok {
		call.Schema = sc.Schema(req, resp)
	}

	return c.untilAccepted(ctx, p, call, p.latency, func(s Session) error {
		return s.Invoke(ctx, call, req, resp)
	})
}

// untilAccepted picks a session for call and runs attempt on it, again on
// another pick (at most maxRefusedRetries times) while servers refuse the
// call without running it. Guards admit and observe every attempt; timed
// says whether the attempt's latency is observed too.
func (c *Client) untilAccepted(ctx context.Context, p *policy, call *ClientCall, timed bool, attempt func(Session) error) error {
	var err error
	var refusedBy Session
	for n := 0; n <= maxRefusedRetries; n++ {
		// A refusal often means the server is moving: look again first.
		s, b, serr := c.retrySession(ctx, p, &call.pick, n, refusedBy)
		if serr != nil {
			return serr
		}
		if err = c.admit(p, b, call); err != nil {
			return err
		}
		var start time.Time
		if timed {
			start = time.Now()
		}
		err = attempt(s)
		c.finish(p, b, call, start, err)
		if err == nil || !status.IsRefused(err) {
			return err
		}
		if ctx.Err() != nil {
			// Not run, and no time left to run it elsewhere.
			return status.FromError(ctx.Err())
		}
		refusedBy = s
	}
	return err
}

// retrySession is session for attempt number attempt of a call. When the
// session that refused the previous attempt comes back (it still says it
// accepts calls: its connection broke and its reader has not noticed yet,
// or the server's stream limit is reached), it waits a little, growing with
// the attempt, and looks again, rather than be refused again at once.
func (c *Client) retrySession(ctx context.Context, p *policy, pi *PickInfo, attempt int, refusedBy Session) (Session, *Backend, error) {
	s, b, err := c.session(ctx, p, pi, attempt > 0)
	if err != nil || refusedBy == nil || !reflect.TypeOf(s).Comparable() || s != refusedBy {
		return s, b, err
	}
	t := time.NewTimer(time.Millisecond << attempt)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil, nil, status.FromError(ctx.Err())
	case <-t.C:
	}
	return c.session(ctx, p, pi, true)
}

// admit asks the policy's guards to admit an attempt on b; a guard that
// refuses fails it, and the guards that admitted it learn that.
func (c *Client) admit(p *policy, b *Backend, call *ClientCall) error {
	call.dones = call.dones[:0]
	for _, g := range p.guards {
		done, err := g.Admit(b, call.Method)
		if err != nil {
			for _, d := range call.dones {
				d(nil) // not sent: neither success nor failure of b
			}
			call.dones = call.dones[:0]
			return err
		}
		if done != nil {
			call.dones = append(call.dones, done)
		}
	}
	return nil
}

// finish records an attempt's outcome on b: the guards' done functions,
// outlier ejection and latency.
func (c *Client) finish(p *policy, b *Backend, call *ClientCall, start time.Time, err error) {
	for _, d := range call.dones {
		if status.IsRefused(err) {
			d(nil) // never run: says nothing about b's health
		} else {
			d(err)
		}
	}
	call.dones = call.dones[:0]
	if p.latency && !start.IsZero() && !status.IsRefused(err) {
		d := int64(time.Since(start))
		if old := b.ewma.Load(); old != 0 {
			d = old + (d-old)/8
		}
		b.ewma.Store(max(d, 1))
	}
	if p.outlier.ConsecutiveFailures > 0 {
		c.observe(p, b, err)
	}
}

// observe counts b's consecutive failures and ejects b when they reach the
// configured number, unless the share of ejected endpoints is used up.
func (c *Client) observe(p *policy, b *Backend, err error) {
	if !serverFailure(err) {
		if err == nil && b.fails.Load() != 0 {
			b.fails.Store(0)
		}
		return
	}
	if int(b.fails.Add(1)) < p.outlier.ConsecutiveFailures {
		return
	}
	now := time.Now().UnixNano()
	if b.ejectedAt(now) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.ejectedAt(now) {
		return
	}
	ejected := 0
	for _, e := range c.eps {
		if e.ejectedAt(now) {
			ejected++
		}
	}
	limit := min(int(p.outlier.MaxEjectedShare*float64(len(c.eps))), len(c.eps)-1)
	if ejected >= limit {
		return // keep counting: the next failure tries again
	}
	k := b.ejections.Load()
	if prev := b.ejectedUntil.Load(); prev != 0 && now-prev > int64(p.outlier.MaxEjection) {
		k = 0 // healthy for long enough: start again from the base period
	}
	d := min(p.outlier.BaseEjection<<min(k, 30), p.outlier.MaxEjection)
	b.ejections.Store(k + 1)
	b.ejectedUntil.Store(now + int64(d))
	b.fails.Store(0)
	c.o.Logger.Warn("endpoint ejected", "target", c.o.Target, "endpoint", b.addr, "for", d, "ejections", k+1)
}

// usable reports whether b may take a call to method now: it is not ejected
// and every guard would admit the call.
func (p *policy) usable(b *Backend, method string) bool {
	if u := b.ejectedUntil.Load(); u != 0 && time.Now().UnixNano() < u {
		return false
	}
	for _, g := range p.guards {
		if !g.Available(b, method) {
			return false
		}
	}
	return true
}

// candidates returns the endpoints the call may use and the index of the
// one the balancer picked, moved to a usable endpoint when the picked one
// is not usable and another is.
func (p *policy) candidates(eps []*Backend, pi *PickInfo) ([]*Backend, int, error) {
	cand := eps
	if p.router != nil {
		sub, err := p.router.Route(pi)
		if err != nil {
			return nil, 0, err
		}
		if sub != nil {
			cand = sub
		}
		if len(cand) == 0 {
			return nil, 0, status.Errorf(status.Unavailable, "no endpoint matches the route of %s", pi.Method)
		}
	}
	if len(cand) == 1 {
		return cand, 0, nil
	}
	i := p.balancer.Pick(pi, cand)
	if i < 0 || i >= len(cand) {
		i = 0
	}
	if !p.usable(cand[i], pi.Method) {
		for j := 1; j < len(cand); j++ {
			if k := (i + j) % len(cand); p.usable(cand[k], pi.Method) {
				return cand, k, nil
			}
		}
	}
	return cand, i, nil
}

// session returns an accepting session to the endpoint the policy picks for
// the call, dialing one if needed. When the picked endpoint cannot be
// reached the others are tried in order; when none can, the endpoints are
// resolved again and tried again a few times within ctx: a server may have
// moved, and a call that was never sent is safe to send elsewhere.
func (c *Client) session(ctx context.Context, p *policy, pi *PickInfo, refresh bool) (Session, *Backend, error) {
	var lastErr error
	for attempt := range connectAttempts {
		eps, err := c.endpoints(ctx, refresh || attempt > 0)
		if err != nil {
			return nil, nil, err
		}
		cand, first, err := p.candidates(eps, pi)
		if err != nil {
			return nil, nil, err
		}
		var n uint64
		if c.o.ConnsPerEndpoint > 1 {
			n = c.next.Add(1)
		}
		// Try each endpoint once, starting at the picked one; wait behind
		// another caller's dial only when nothing else works.
		var busy *Backend
		var busySlot *connSlot
		for i := range cand {
			ep := cand[(first+i)%len(cand)]
			if i > 0 && !p.usable(ep, pi.Method) {
				continue
			}
			slot := &ep.slots[int(n%uint64(len(ep.slots)))]
			if b := slot.sess.Load(); b != nil && b.s.Accepting() {
				return b.s, ep, nil
			}
			s, err := c.dial(ctx, ep, slot, false)
			if err == nil {
				return s, ep, nil
			}
			if err == errDialBusy {
				if busy == nil {
					busy, busySlot = ep, slot
				}
				continue
			}
			lastErr = err
			if ctx.Err() != nil {
				return nil, nil, status.FromError(ctx.Err())
			}
			if p.outlier.ConsecutiveFailures > 0 {
				c.observe(p, ep, err)
			}
		}
		if busy != nil {
			s, err := c.dial(ctx, busy, busySlot, true)
			if err == nil {
				return s, busy, nil
			}
			lastErr = err
			if ctx.Err() != nil {
				return nil, nil, status.FromError(ctx.Err())
			}
		}
		t := time.NewTimer(time.Duration(10<<attempt) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, status.FromError(ctx.Err())
		case <-t.C:
		}
	}
	if lastErr == nil {
		lastErr = status.Errorf(status.Unavailable, "no usable endpoint of %s", c.o.Target)
	}
	return nil, nil, lastErr
}

// connectAttempts bounds how often session resolves and dials again.
const connectAttempts = 4

// errDialBusy says another caller is dialing the slot.
var errDialBusy = status.New(status.Unavailable, "another call is connecting")

// dial connects slot. With wait false it returns errDialBusy rather than
// wait behind another caller's dial, so the caller can try another endpoint.
func (c *Client) dial(ctx context.Context, ep *Backend, slot *connSlot, wait bool) (Session, error) {
	select {
	case slot.dialing <- struct{}{}:
	default:
		if !wait {
			return nil, errDialBusy
		}
		select {
		case slot.dialing <- struct{}{}:
		case <-ctx.Done():
			return nil, status.FromError(ctx.Err())
		}
	}
	defer func() { <-slot.dialing }()
	if b := slot.sess.Load(); b != nil && b.s.Accepting() {
		return b.s, nil
	}
	if b := slot.sess.Load(); b != nil {
		b.s.Drain() // the replaced session closes once its calls end
	}
	dctx, cancel := context.WithTimeout(ctx, c.o.DialTimeout)
	defer cancel()
	// A transport such as QUIC cannot tell a dead address from a slow one
	// until its handshake times out: stop when the endpoint leaves the set.
	defer context.AfterFunc(ep.gone, cancel)()
	conn, err := ep.transport.Dial(dctx, ep.address)
	if err != nil {
		return nil, status.Errorf(status.Unavailable, "dial %s: %v", ep.addr, err)
	}
	// The handshake knows only its own timeout: close the connection if
	// the dial's deadline (and so the caller's) passes first.
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	s, err := c.o.Protocol.NewSession(conn, SessionOptions{Limits: c.o.Limits, Endpoint: ep.addr})
	if !stop() {
		if err == nil {
			s.Close()
		}
		if ctx.Err() != nil {
			return nil, status.FromError(ctx.Err())
		}
		return nil, status.Errorf(status.Unavailable, "connect %s: handshake timed out after %v", ep.addr, c.o.DialTimeout)
	}
	if err != nil {
		conn.Close()
		return nil, status.Errorf(status.Unavailable, "connect %s: %v", ep.addr, err)
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		s.Close()
		return nil, status.New(status.Unavailable, "client is closed")
	}
	c.o.Logger.Debug("connected", "endpoint", ep.addr)
	slot.sess.Store(&sessionBox{s})
	return s, nil
}

// resolveEvery is how long resolved endpoints are reused before resolving
// the target again.
const resolveEvery = 5 * time.Second

// endpoints returns the target's endpoints, resolving them when they are
// unknown, older than resolveEvery (unless a watch keeps them fresh), or
// refresh is set.
func (c *Client) endpoints(ctx context.Context, refresh bool) ([]*Backend, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, status.New(status.Unavailable, "client is closed")
	}
	if c.eps != nil && !refresh && (c.watched || time.Since(c.resolved) < resolveEvery) {
		return c.eps, nil
	}
	if c.o.Resolver == nil {
		return c.setLocked([]Endpoint{{Address: c.o.Target}})
	}
	found, err := c.o.Resolver.Resolve(ctx, c.o.Target)
	if err != nil {
		if c.eps != nil {
			return c.eps, nil // keep serving from the last known set
		}
		return nil, status.Errorf(status.Unavailable, "resolve %s: %v", c.o.Target, err)
	}
	return c.setLocked(found)
}

// setLocked makes found the endpoint set, keeping the connections and
// counters of endpoints that stay (their labels and weight are updated);
// c.mu is held. Connections to endpoints that left finish their calls in
// flight before they close.
func (c *Client) setLocked(found []Endpoint) ([]*Backend, error) {
	old := make(map[string]*Backend, len(c.eps))
	for _, e := range c.eps {
		old[e.addr] = e
	}
	eps := make([]*Backend, 0, len(found))
	var skipped []string
	for _, f := range found {
		info := f
		if e, ok := old[f.Address]; ok {
			e.info.Store(&info)
			eps = append(eps, e)
			delete(old, f.Address)
			continue
		}
		scheme, addr := SplitAddress(f.Address)
		tr := c.o.Transports[scheme]
		if tr == nil {
			skipped = append(skipped, f.Address)
			continue
		}
		slots := make([]connSlot, c.o.ConnsPerEndpoint)
		for i := range slots {
			slots[i].dialing = make(chan struct{}, 1)
		}
		gone, cancel := context.WithCancel(context.Background())
		b := &Backend{addr: f.Address, transport: tr, address: addr, slots: slots, gone: gone, cancel: cancel}
		b.info.Store(&info)
		eps = append(eps, b)
	}
	if len(eps) == 0 {
		if len(skipped) > 0 {
			return nil, status.Errorf(status.Unavailable, "resolve %s: no transport for endpoints %v", c.o.Target, skipped)
		}
		return nil, status.Errorf(status.Unavailable, "resolve %s: no endpoints", c.o.Target)
	}
	for _, e := range old {
		go e.retire()
	}
	if c.eps != nil {
		// Endpoints that join a set already in use (a server moving to a
		// new listener, a new replica) are connected now, in the
		// background, so that no call waits for their dial.
		known := make(map[*Backend]bool, len(c.eps))
		for _, e := range c.eps {
			known[e] = true
		}
		for _, e := range eps {
			if !known[e] {
				go c.warm(e)
			}
		}
	}
	c.eps, c.resolved = eps, time.Now()
	if r := c.pol.Load().router; r != nil {
		r.Update(eps)
	}
	return eps, nil
}

// warm connects the first connection slot of e, within the dial timeout,
// unless a call is connecting it already; a failure is left for the calls
// to find.
func (c *Client) warm(e *Backend) {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.DialTimeout)
	defer cancel()
	if _, err := c.dial(ctx, e, &e.slots[0], false); err != nil && err != errDialBusy {
		c.o.Logger.Debug("connecting a new endpoint ahead of its calls failed", "endpoint", e.addr, "err", err)
	}
}

// watch follows a Watcher's updates until ctx is done.
func (c *Client) watch(ctx context.Context, w Watcher) {
	err := w.Watch(ctx, c.o.Target, func(found []Endpoint) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return
		}
		if _, err := c.setLocked(found); err != nil {
			c.o.Logger.Debug("endpoint update ignored", "target", c.o.Target, "err", err)
			return
		}
		c.watched = true
	})
	if err != nil && ctx.Err() == nil {
		c.o.Logger.Warn("watch failed; resolving periodically instead", "target", c.o.Target, "err", err)
	}
	c.mu.Lock()
	c.watched = false
	c.mu.Unlock()
}

// retireGrace bounds how long connections to a removed endpoint wait for
// their calls before they close.
const retireGrace = time.Minute

// retire drains the endpoint's connections: calls in flight finish, new
// ones go elsewhere, and a connection still busy after retireGrace closes.
func (e *Backend) retire() {
	e.cancel()
	for i := range e.slots {
		if b := e.slots[i].sess.Load(); b != nil {
			b.s.Drain()
			go func() {
				select {
				case <-b.s.Done():
				case <-time.After(retireGrace):
					b.s.Close()
				}
			}()
		}
	}
}

func (e *Backend) closeIdle() {
	e.cancel()
	for i := range e.slots {
		if b := e.slots[i].sess.Load(); b != nil {
			b.s.Close()
		}
	}
}

// Close closes every connection; calls in flight fail with UNAVAILABLE.
func (c *Client) Close() error {
	c.stop()
	c.mu.Lock()
	c.closed = true
	eps := c.eps
	c.eps = nil
	c.mu.Unlock()
	for _, e := range eps {
		e.closeIdle()
	}
	return nil
}

// String describes the client for logs.
func (c *Client) String() string { return fmt.Sprintf("client(%s)", c.o.Target) }

// NewStream opens a streaming call to method ("/pkg.Service/Method") through
// the client's stream interceptors. Cancelling ctx ends the call; so does
// reading until RecvMsg returns an error.
func (c *Client) NewStream(ctx context.Context, method string, opts ...CallOption) (ClientStream, error) {
	p := c.pol.Load()
	if d, ok := p.timeouts[method]; ok && d > 0 {
		// The stream lives as long as ctx: the timeout bounds the stream,
		// and ends with it.
		if dl, has := ctx.Deadline(); !has || time.Until(dl) > d {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			context.AfterFunc(ctx, cancel)
		}
	}
	if len(opts) > 0 {
		ctx = withCallOptions(ctx, opts)
	}
	return p.stream(ctx, method)
}

// open is the innermost Streamer: pick an endpoint and a connection and open
// the stream, again elsewhere when a server refused it. Guards see the
// opening of the stream, not its end.
func (c *Client) open(ctx context.Context, p *policy, method string) (ClientStream, error) {
	call := &ClientCall{Method: method, Codec: c.o.Codec, Metadata: metadata.FromOutgoingContext(ctx)}
	if opts, ok := ctx.Value(optsKey{}).([]CallOption); ok {
		for _, o := range opts {
			o(call)
		}
	}
	call.pick = PickInfo{Method: method, Metadata: call.Metadata}
	if sc, ok := call.Codec.(SchemaCodec); ok && call.req != nil {
		call.Schema = sc.Schema(call.req, call.resp)
	}
	var cs ClientStream
	err := c.untilAccepted(ctx, p, call, false, func(s Session) (err error) {
		cs, err = s.NewStream(ctx, call)
		return err
	})
	if err != nil {
		return nil, err
	}
	return cs, nil
}
