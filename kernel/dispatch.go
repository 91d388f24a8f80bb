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
	// Header and Trailer are the response metadata the handler set.
	Header, Trailer metadata.MD
}

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

// Route is a method together with the generation's interceptor chain around
// its handler.
type Route struct {
	Method *MethodDesc
	handle UnaryHandler  // unary methods
	stream StreamHandler // streaming methods
	// schemas holds the method's fingerprint for each SchemaCodec.
	schemas map[string]string
}

// Dispatcher is one generation's server side that protocols dispatch to: the
// service table, the interceptor chain, the accepted codecs and the limits.
// It is immutable and safe for concurrent use.
type Dispatcher struct {
	routes   map[string]*Route
	codecs   map[string]Codec
	accepted string // sorted codec names, for errors
	defCodec Codec
	limits   Limits
	log      *slog.Logger
}

// NewDispatcher returns a dispatcher over the services of t, wrapping every
// handler in the server sides of ics (outermost first): the unary sides
// around unary methods, the stream sides around streaming ones. codecs are
// the accepted content subtypes; the first is used when a call names none.
func NewDispatcher(t *ServiceTable, ics []Interceptor, codecs []Codec, limits Limits, log *slog.Logger) *Dispatcher {
	d := &Dispatcher{routes: make(map[string]*Route), codecs: make(map[string]Codec), limits: limits.WithDefaults(), log: log}
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
		r := &Route{Method: m}
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

// Route returns the route of the method with full name "/pkg.Service/Method",
// or nil when there is none.
func (d *Dispatcher) Route(fullName string) *Route { return d.routes[fullName] }

// Codec returns the accepted codec named name ("" selects the default), or an
// UNIMPLEMENTED status naming the accepted ones.
func (d *Dispatcher) Codec(name string) (Codec, error) {
	if name == "" && d.defCodec != nil {
		return d.defCodec, nil
	}
	if c := d.codecs[name]; c != nil {
		return c, nil
	}
	return nil, status.Errorf(status.Unimplemented, "codec %q is not accepted by this server (accepted: %s)", name, d.accepted)
}

// Limits returns the server's resource limits.
func (d *Dispatcher) Limits() Limits { return d.limits }

// Logger returns the generation's logger.
func (d *Dispatcher) Logger() *slog.Logger { return d.log }

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
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("handler panic", "method", r.Method.FullName, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
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
