package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// ServerCall describes the call a server is handling. Protocols create one
// per call and put it in the handler's context; handlers and interceptors
// read it with CallFromContext. It is owned by the call: do not retain it
// after the handler returns.
type ServerCall struct {
	// Method is the method being called.
	Method *MethodDesc
	// Protocol names the protocol that carried the call, such as "axon".
	Protocol string
	// Peer is the remote address of the connection.
	Peer net.Addr
	// PeerIdentity is the identity of the certificate the peer presented
	// and the listener verified (mutual TLS): its SPIFFE ID, else its DNS
	// name; empty without one. Authorization goes by it.
	PeerIdentity string
	// TLS is the TLS of the listener that took the call (its mode and
	// credentials: TLS.Identity is this server's identity); nil when the
	// listener is plaintext.
	TLS *TLS
	// Header and Trailer are the response metadata the handler set.
	Header, Trailer metadata.MD
}

// Spec returns the description of the call: service, method, shape and
// idempotency (the peer is c.Peer).
func (c *ServerCall) Spec() *Spec { return c.Method.Spec() }

type callKey struct{}

// NewCallContext returns ctx carrying call. Protocols call it.
func NewCallContext(ctx context.Context, call *ServerCall) context.Context {
	return context.WithValue(ctx, callKey{}, call)
}

// CallFromContext returns the call a server handler is running for, or nil
// outside a handler.
func CallFromContext(ctx context.Context) *ServerCall {
	c, _ := ctx.Value(callKey{}).(*ServerCall)
	return c
}

// PeerIdentity returns the verified identity of the peer of the call in
// ctx (ServerCall.PeerIdentity), or "" when it presented no certificate
// or ctx holds no call.
func PeerIdentity(ctx context.Context) string {
	if c := CallFromContext(ctx); c != nil {
		return c.PeerIdentity
	}
	return ""
}

// SetHeader adds md to the response header metadata of the call in ctx.
func SetHeader(ctx context.Context, md metadata.MD) error {
	return addMD(ctx, md, func(c *ServerCall) *metadata.MD { return &c.Header })
}

// SetTrailer adds md to the trailer metadata sent with the call's status.
func SetTrailer(ctx context.Context, md metadata.MD) error {
	return addMD(ctx, md, func(c *ServerCall) *metadata.MD { return &c.Trailer })
}

func addMD(ctx context.Context, md metadata.MD, field func(*ServerCall) *metadata.MD) error {
	c := CallFromContext(ctx)
	if c == nil {
		return fmt.Errorf("kernel: no server call in context")
	}
	dst := field(c)
	if *dst == nil {
		*dst = make(metadata.MD, len(md))
	}
	for k, v := range md {
		dst.Append(k, v...)
	}
	return nil
}

// Route is a method together with one generation's interceptor chain
// around its handler.
type Route struct {
	Method *MethodDesc
	handle UnaryHandler  // unary methods
	stream StreamHandler // streaming methods
	// schemas holds the method's fingerprint for each SchemaCodec.
	schemas map[string]string
	table   *dispatchTable
}

// Dispatcher is the server side that protocols dispatch to: the service
// table, an interceptor chain, the accepted codecs and the limits. A
// protocol server keeps one Dispatcher for its life; when the runtime
// applies a configuration that leaves a listener unchanged, it keeps the
// listener's connections and switches its Dispatcher to the new
// generation's chains: calls that start afterwards take the new chains,
// calls in flight finish on the ones they started with. It is safe for
// concurrent use.
type Dispatcher struct {
	t   atomic.Pointer[dispatchTable]
	tls *TLS // the listener's; set before it serves
}

// TLS returns the TLS of the listener the dispatcher serves (nil when it
// is plaintext, or secured by its transport with mode off). Protocols put
// it in ServerCall.TLS.
func (d *Dispatcher) TLS() *TLS { return d.tls }

// dispatchTable is one generation's routes, codecs and limits. It counts
// the calls that run its chains, so that the generation's plugins are
// cleaned up only once the last of them has ended.
type dispatchTable struct {
	routes   map[string]*Route
	codecs   map[string]Codec
	accepted string // sorted codec names, for errors
	defCodec Codec
	limits   Limits
	log      *slog.Logger
	budget   *Budget
	gate     *connGate // the runtime's, for Penalize; nil outside a Runtime

	calls   atomic.Int64
	retired atomic.Bool
	idleNow sync.Once
	idle    chan struct{} // closed once retired and no call is left
}

// NewDispatcher returns a dispatcher over the services of t, wrapping every
// handler in the server sides of ics (outermost first): the unary sides
// around unary methods, the stream sides around streaming ones. codecs are
// the accepted content subtypes; the first is used when a call names none.
// Its buffer budget is its own, of limits.MaxBuffered bytes (a runtime's
// dispatchers share the runtime's).
func NewDispatcher(t *ServiceTable, ics []Interceptor, codecs []Codec, limits Limits, log *slog.Logger) *Dispatcher {
	d := new(Dispatcher)
	d.t.Store(newTable(t, ics, codecs, limits, log, NewBudget(int64(limits.WithDefaults().MaxBuffered))))
	return d
}

func newTable(t *ServiceTable, ics []Interceptor, codecs []Codec, limits Limits, log *slog.Logger, budget *Budget) *dispatchTable {
	d := &dispatchTable{routes: make(map[string]*Route), codecs: make(map[string]Codec), limits: limits.WithDefaults(), log: log, budget: budget, idle: make(chan struct{})}
	var unary []UnaryServerInterceptor
	var streams []StreamServerInterceptor
	for _, ic := range ics {
		if ic.Server != nil {
			unary = append(unary, ic.Server)
		}
		if ic.StreamServer != nil {
			streams = append(streams, ic.StreamServer)
		}
	}
	for name, m := range t.methods {
		r := &Route{Method: m, table: d}
		if m.Stream != nil {
			r.stream = chainStreamServer(streams, m.Stream)
		} else {
			r.handle = chainServer(unary, m.Handler)
		}
		for _, c := range codecs {
			if sc, ok := c.(SchemaCodec); ok {
				if r.schemas == nil {
					r.schemas = make(map[string]string)
				}
				r.schemas[c.Name()] = sc.Schema(m.NewRequest(), m.NewResponse())
			}
		}
		d.routes[name] = r
	}
	var names []string
	for _, c := range codecs {
		d.codecs[c.Name()] = c
		names = append(names, c.Name())
	}
	if len(codecs) > 0 {
		d.defCodec = codecs[0]
	}
	sort.Strings(names)
	d.accepted = strings.Join(names, ", ")
	return d
}

// enter counts a call that runs r's chain and returns the route it runs on:
// r, or, when r's generation retired after the protocol looked it up, the
// same method's route in the generation d serves now. ok is false when
// there is none (the server is stopping).
func (d *Dispatcher) enter(r *Route) (_ *Route, ok bool) {
	t := r.table
	t.calls.Add(1)
	if !t.retired.Load() {
		return r, true
	}
	t.leave()
	cur := d.t.Load()
	if cur == t {
		return r, false
	}
	if nr := cur.routes[r.Method.FullName]; nr != nil {
		return d.enter(nr)
	}
	return r, false
}

// leave ends a call that enter counted.
func (t *dispatchTable) leave() {
	if t.calls.Add(-1) == 0 && t.retired.Load() {
		t.idleNow.Do(func() { close(t.idle) })
	}
}

// retire marks the table as replaced: calls that have not entered yet go
// to the dispatcher's current table. It returns a channel closed once no
// call runs the table's chains.
func (t *dispatchTable) retire() <-chan struct{} {
	t.retired.Store(true)
	if t.calls.Load() == 0 {
		t.idleNow.Do(func() { close(t.idle) })
	}
	return t.idle
}

// errStopping refuses a call that arrived as the server stopped.
var errStopping = status.Refused("server is stopping")

// Route returns the route of the method with full name "/pkg.Service/Method",
// or nil when there is none.
func (d *Dispatcher) Route(fullName string) *Route { return d.t.Load().routes[fullName] }

// Codec returns the accepted codec named name ("" selects the default), or an
// UNIMPLEMENTED status naming the accepted ones.
func (d *Dispatcher) Codec(name string) (Codec, error) {
	t := d.t.Load()
	if name == "" && t.defCodec != nil {
		return t.defCodec, nil
	}
	if c := t.codecs[name]; c != nil {
		return c, nil
	}
	return nil, status.Errorf(status.Unimplemented, "codec %q is not accepted by this server (accepted: %s)", name, t.accepted)
}

// Limits returns the server's resource limits.
func (d *Dispatcher) Limits() Limits { return d.t.Load().limits }

// Budget returns the process-wide budget of buffered bytes (see Budget).
func (d *Dispatcher) Budget() *Budget { return d.t.Load().budget }

// Penalize tells the runtime that the peer at addr abused a connection
// (a protocol closed it for flooding frames that do no work): new
// connections from its IP address are refused at accept for 10 s, and
// counted as "abuse" in the live view. Peers behind the same address share
// the penalty. A Dispatcher outside a Runtime ignores it.
func (d *Dispatcher) Penalize(addr net.Addr) {
	if g := d.t.Load().gate; g != nil {
		g.penalize(addr)
	}
}

// Logger returns the current generation's logger.
func (d *Dispatcher) Logger() *slog.Logger { return d.t.Load().log }

// HandleUnary runs the interceptor chain and the handler of r for req. A
// call whose context is already done (its deadline passed while it arrived
// or waited) gets DEADLINE_EXCEEDED (or CANCELLED) and runs nothing. A
// panic anywhere in the chain is recovered, logged with its stack, and
// becomes INTERNAL; the server keeps serving.
func (d *Dispatcher) HandleUnary(ctx context.Context, r *Route, req any) (resp any, err error) {
	if r.handle == nil {
		return nil, status.Errorf(status.Internal, "%s is a streaming method, called as unary", r.Method.FullName)
	}
	if err := ctx.Err(); err != nil {
		return nil, expired(r, err)
	}
	r, ok := d.enter(r)
	if !ok {
		return nil, errStopping
	}
	defer r.table.leave()
	defer func() {
		if p := recover(); p != nil {
			r.table.log.Error("handler panic", "method", r.Method.FullName, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(status.Internal, "handler panic in %s", r.Method.FullName)
		}
	}()
	return r.handle(ctx, req)
}

// expired is the status of a call whose context ended (its deadline passed
// or its client cancelled) before its handler ran: the handler is not run.
func expired(r *Route, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Errorf(status.DeadlineExceeded, "deadline exceeded before %s ran", r.Method.FullName)
	}
	return status.Errorf(status.Canceled, "call to %s cancelled before it ran", r.Method.FullName)
}

// UnknownMethod returns the UNIMPLEMENTED status for a call to fullName.
func UnknownMethod(fullName string) error {
	return status.Errorf(status.Unimplemented, "unknown method %s", fullName)
}
