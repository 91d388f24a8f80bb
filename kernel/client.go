package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

	req, resp any // message samples for Schema, from StreamTypes
}

// CallOption changes one call.
type CallOption func(*ClientCall)

// Header stores the response header metadata of the call in md.
func Header(md *metadata.MD) CallOption { return func(c *ClientCall) { c.Header = md } }

// Trailer stores the trailer metadata of the call in md.
func Trailer(md *metadata.MD) CallOption { return func(c *ClientCall) { c.Trailer = md } }

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
	// Timeout is the deadline given to calls whose context has none; zero
	// means none.
	Timeout time.Duration
	// Interceptors wrap every call, outermost first: their unary client
	// sides wrap unary calls, their stream client sides streaming calls.
	Interceptors []Interceptor
	// Limits bound what a server can make the client allocate.
	Limits Limits
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
}

// maxRefusedRetries bounds how often one call is sent again after servers
// refused it without running it.
const maxRefusedRetries = 4

// Client sends calls to one target over a few shared, multiplexed
// connections per endpoint. It is safe for concurrent use; Close releases
// its connections.
type Client struct {
	o      ClientOptions
	invoke UnaryInvoker
	stream Streamer
	pool   sync.Pool // *ClientCall

	mu       sync.Mutex
	eps      []*endpointConns
	resolved time.Time
	watched  bool // a Watcher keeps eps up to date
	closed   bool
	next     atomic.Uint64
	stop     context.CancelFunc // ends the watch
}

type endpointConns struct {
	addr      string
	transport Transport
	address   string
	slots     []connSlot
	// gone is cancelled when the endpoint leaves the set: dials to it stop.
	gone   context.Context
	cancel context.CancelFunc
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
	var unary []UnaryClientInterceptor
	var streams []StreamClientInterceptor
	for _, ic := range o.Interceptors {
		if ic.Client != nil {
			unary = append(unary, ic.Client)
		}
		if ic.StreamClient != nil {
			streams = append(streams, ic.StreamClient)
		}
	}
	c.invoke = chainClient(unary, c.send)
	c.stream = chainStreamClient(streams, c.open)
	if w, ok := o.Resolver.(Watcher); ok {
		var ctx context.Context
		ctx, c.stop = context.WithCancel(context.Background())
		go c.watch(ctx, w)
	}
	return c, nil
}

// Invoke calls method ("/pkg.Service/Method") with req and decodes the
// response into resp. It returns nil or a *status.Error, and never blocks
// past ctx's deadline.
func (c *Client) Invoke(ctx context.Context, method string, req, resp any, opts ...CallOption) error {
	if c.o.Timeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, c.o.Timeout)
			defer cancel()
		}
	}
	if len(opts) == 0 {
		return c.invoke(ctx, method, req, resp)
	}
	return c.invoke(withCallOptions(ctx, opts), method, req, resp)
}

type optsKey struct{}

func withCallOptions(ctx context.Context, opts []CallOption) context.Context {
	return context.WithValue(ctx, optsKey{}, opts)
}

// send is the innermost invoker: pick a connection, send, and resend a call
// that a server refused before running it.
func (c *Client) send(ctx context.Context, method string, req, resp any) error {
	call := c.pool.Get().(*ClientCall)
	*call = ClientCall{Method: method, Codec: c.o.Codec, Metadata: metadata.FromOutgoingContext(ctx)}
	if opts, ok := ctx.Value(optsKey{}).([]CallOption); ok {
		for _, o := range opts {
			o(call)
		}
	}
	defer func() { *call = ClientCall{}; c.pool.Put(call) }()
	if sc, ok := call.Codec.(SchemaCodec); ok {
		call.Schema = sc.Schema(req, resp)
	}

	var err error
	for attempt := 0; attempt <= maxRefusedRetries; attempt++ {
		var s Session
		// A refusal often means the server is moving: look again first.
		s, err = c.session(ctx, attempt > 0)
		if err != nil {
			return err
		}
		err = s.Invoke(ctx, call, req, resp)
		if err == nil || !status.IsRefused(err) {
			return err
		}
		if ctx.Err() != nil {
			// Not run, and no time left to run it elsewhere.
			return status.FromError(ctx.Err())
		}
	}
	return err
}

// session returns an accepting session, dialing one if needed. When no
// endpoint can be reached, the endpoints are resolved again and tried again
// a few times within ctx: a server may have moved, and a call that was never
// sent is safe to send elsewhere.
func (c *Client) session(ctx context.Context, refresh bool) (Session, error) {
	var lastErr error
	for attempt := range connectAttempts {
		eps, err := c.endpoints(ctx, refresh || attempt > 0)
		if err != nil {
			return nil, err
		}
		n := c.next.Add(1)
		// Try each endpoint once, starting at the round-robin position;
		// wait behind another caller's dial only when nothing else works.
		var busy *endpointConns
		var busySlot *connSlot
		for i := range eps {
			ep := eps[(int(n)+i)%len(eps)]
			slot := &ep.slots[int(n/uint64(len(eps)))%len(ep.slots)]
			if b := slot.sess.Load(); b != nil && b.s.Accepting() {
				return b.s, nil
			}
			s, err := c.dial(ctx, ep, slot, false)
			if err == nil {
				return s, nil
			}
			if err == errDialBusy {
				if busy == nil {
					busy, busySlot = ep, slot
				}
				continue
			}
			lastErr = err
			if ctx.Err() != nil {
				return nil, status.FromError(ctx.Err())
			}
		}
		if busy != nil {
			s, err := c.dial(ctx, busy, busySlot, true)
			if err == nil {
				return s, nil
			}
			lastErr = err
			if ctx.Err() != nil {
				return nil, status.FromError(ctx.Err())
			}
		}
		t := time.NewTimer(time.Duration(10<<attempt) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, status.FromError(ctx.Err())
		case <-t.C:
		}
	}
	return nil, lastErr
}

// connectAttempts bounds how often session resolves and dials again.
const connectAttempts = 4

// errDialBusy says another caller is dialing the slot.
var errDialBusy = status.New(status.Unavailable, "another call is connecting")

// dial connects slot. With wait false it returns errDialBusy rather than
// wait behind another caller's dial, so the caller can try another endpoint.
func (c *Client) dial(ctx context.Context, ep *endpointConns, slot *connSlot, wait bool) (Session, error) {
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
func (c *Client) endpoints(ctx context.Context, refresh bool) ([]*endpointConns, error) {
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

// setLocked makes found the endpoint set, keeping the connections of
// endpoints that stay; c.mu is held. Connections to endpoints that left
// finish their calls in flight before they close.
func (c *Client) setLocked(found []Endpoint) ([]*endpointConns, error) {
	old := make(map[string]*endpointConns, len(c.eps))
	for _, e := range c.eps {
		old[e.addr] = e
	}
	eps := make([]*endpointConns, 0, len(found))
	var skipped []string
	for _, f := range found {
		if e, ok := old[f.Address]; ok {
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
		eps = append(eps, &endpointConns{addr: f.Address, transport: tr, address: addr, slots: slots, gone: gone, cancel: cancel})
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
	c.eps, c.resolved = eps, time.Now()
	return eps, nil
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
func (e *endpointConns) retire() {
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

func (e *endpointConns) closeIdle() {
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
	if len(opts) > 0 {
		ctx = withCallOptions(ctx, opts)
	}
	return c.stream(ctx, method)
}

// open is the innermost Streamer: pick a connection and open the stream,
// again elsewhere when a server refused it.
func (c *Client) open(ctx context.Context, method string) (ClientStream, error) {
	call := &ClientCall{Method: method, Codec: c.o.Codec, Metadata: metadata.FromOutgoingContext(ctx)}
	if opts, ok := ctx.Value(optsKey{}).([]CallOption); ok {
		for _, o := range opts {
			o(call)
		}
	}
	if sc, ok := call.Codec.(SchemaCodec); ok && call.req != nil {
		call.Schema = sc.Schema(call.req, call.resp)
	}
	var err error
	for attempt := 0; attempt <= maxRefusedRetries; attempt++ {
		var s Session
		s, err = c.session(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		var cs ClientStream
		cs, err = s.NewStream(ctx, call)
		if err == nil || !status.IsRefused(err) {
			return cs, err
		}
		if ctx.Err() != nil {
			return nil, status.FromError(ctx.Err())
		}
	}
	return nil, err
}
