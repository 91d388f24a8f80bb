package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

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
	// TLS secures every connection the client dials (asking for the
	// protocol's ALPN IDs), except over a TLSTransport, which was built
	// with it; nil dials plaintext.
	TLS *TLS

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

// Client sends calls to one target over a few shared, multiplexed
// connections per endpoint. It is safe for concurrent use; Close releases
// its connections.
type Client struct {
	o     ClientOptions
	specs specCache
	// protoName names the protocol in the live view, when it has a
	// Name method.
	protoName string
	alpn      []string  // the protocol's ALPN IDs, asked for under TLS
	pool      sync.Pool // *ClientCall
	pol       atomic.Pointer[policy]

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
	if n, ok := o.Protocol.(interface{ Name() string }); ok {
		c.protoName = n.Name()
	}
	c.alpn = alpnOf([]Protocol{o.Protocol})
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
	p.invoke = chainClient(unary, func(ctx context.Context, spec *Spec, req, resp any) error {
		return c.send(ctx, p, spec, req, resp)
	})
	p.stream = chainStreamClient(streams, func(ctx context.Context, spec *Spec) (ClientStream, error) {
		return c.open(ctx, p, spec)
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
		return p.invoke(ctx, c.specs.get(method, StreamTypeUnary, false), req, resp)
	}
	o := c.factsOf(opts)
	return p.invoke(withCallOptions(ctx, opts), c.specs.get(method, StreamTypeUnary, o.idempotent), req, resp)
}

// callFacts is what a call's options say about its Spec.
type callFacts struct {
	idempotent bool
	shape      StreamType
}

// factsOf applies opts to a scratch call to learn what they say about the
// call's Spec, without allocating.
func (c *Client) factsOf(opts []CallOption) callFacts {
	call := c.pool.Get().(*ClientCall)
	dones := call.dones[:0]
	*call = ClientCall{dones: dones, shape: StreamTypeUnknown}
	for _, o := range opts {
		o(call)
	}
	f := callFacts{idempotent: call.Idempotent, shape: call.shape}
	*call = ClientCall{dones: dones}
	c.pool.Put(call)
	return f
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
	f := callFacts{shape: StreamTypeUnknown}
	if len(opts) > 0 {
		f = c.factsOf(opts)
		ctx = withCallOptions(ctx, opts)
	}
	return p.stream(ctx, c.specs.get(method, f.shape, f.idempotent))
}
