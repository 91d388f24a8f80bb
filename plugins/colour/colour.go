package colour

import (
	"context"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/baggage"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// BaggageKey is the W3C baggage member that also carries a call's colour,
// so that OpenTelemetry clients in other languages can set and read it;
// the tracing interceptor sends a context's baggage on.
const BaggageKey = Key

// With returns ctx whose outgoing calls carry colour c: in their metadata
// (axon-colour) and as a member of the context's W3C baggage.
func With(ctx context.Context, c string) context.Context {
	md := metadata.FromOutgoingContext(ctx).Copy()
	if md == nil {
		md = metadata.MD{}
	}
	md.Set(Key, c)
	return withBaggage(metadata.NewOutgoingContext(ctx, md), c)
}

// withBaggage returns ctx whose OpenTelemetry baggage has member
// BaggageKey=c; ctx unchanged if c is not a valid member value.
func withBaggage(ctx context.Context, c string) context.Context {
	m, err := baggage.NewMemberRaw(BaggageKey, c)
	if err != nil {
		return ctx
	}
	b, err := baggage.FromContext(ctx).SetMember(m)
	if err != nil {
		return ctx
	}
	return baggage.ContextWithBaggage(ctx, b)
}

// From returns the colour of the call ctx belongs to: the outgoing colour
// if one is set, otherwise the incoming call's (its axon-colour metadata,
// else its W3C baggage member axon-colour), otherwise "".
func From(ctx context.Context) string {
	if c := metadata.FromOutgoingContext(ctx).Get(Key); c != "" {
		return c
	}
	return incoming(metadata.FromIncomingContext(ctx))
}

// incoming returns the colour an incoming call carries: its axon-colour
// metadata, else the axon-colour member of its baggage header.
func incoming(in metadata.MD) string {
	if c := in.Get(Key); c != "" {
		return c
	}
	h := in.Get("baggage")
	if h == "" {
		return ""
	}
	b, err := baggage.Parse(h)
	if err != nil {
		return ""
	}
	return b.Member(BaggageKey).Value()
}

// Propagator is the colour interceptor's instance.
type Propagator struct {
	keys   []string
	colour string
}

// NewPropagator returns the interceptor configured by c.
func NewPropagator(c InterceptorConfig) *Propagator {
	p := &Propagator{colour: c.Colour}
	for _, k := range c.Propagate {
		p.keys = append(p.keys, strings.ToLower(k))
	}
	return p
}

// carry adds to ctx's outgoing metadata the propagated keys of the
// incoming call that the outgoing metadata lacks. It allocates only when
// there is something to carry.
func (p *Propagator) carry(ctx context.Context) context.Context {
	in := metadata.FromIncomingContext(ctx)
	var out metadata.MD
	var kv []string
	for _, k := range p.keys {
		v, ok := in[k]
		if !ok || len(v) == 0 {
			continue
		}
		if out == nil {
			out = metadata.FromOutgoingContext(ctx)
		}
		if _, set := out[k]; set {
			continue
		}
		for _, x := range v {
			kv = append(kv, k, x)
		}
	}
	// A colour that came only as a baggage member (from an OpenTelemetry
	// client) goes on as metadata too, for routing rules and older peers.
	colour := ""
	if in.Get(Key) == "" {
		colour = incoming(in)
		if colour == "" {
			colour = p.colour
		}
	}
	if colour != "" {
		if out == nil {
			out = metadata.FromOutgoingContext(ctx)
		}
		if out.Get(Key) == "" {
			kv = append(kv, Key, colour)
			ctx = withBaggage(ctx, colour) // sent by a tracing interceptor after this one
		}
	}
	if kv == nil {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// Unary is the unary client interceptor.
func (p *Propagator) Unary(ctx context.Context, spec *kernel.Spec, req, resp any, next kernel.UnaryInvoker) error {
	return next(p.carry(ctx), spec, req, resp)
}

// Stream is the stream client interceptor.
func (p *Propagator) Stream(ctx context.Context, spec *kernel.Spec, next kernel.Streamer) (kernel.ClientStream, error) {
	return next(p.carry(ctx), spec)
}

// Router is the rules router's instance: it keeps, for the client's current
// endpoints, the endpoints of each rule and of the default pool.
type Router struct {
	cfg   RouterConfig
	state atomic.Pointer[routeState]
}

type routeState struct {
	rules []ruleState
	pool  []*kernel.Backend
	all   int
}

type ruleState struct {
	backends []*kernel.Backend
	err      error // when backends is empty and the fallback is fail
}

// NewRouter returns the router configured by c.
func NewRouter(c RouterConfig) *Router { return &Router{cfg: c} }

func has(b *kernel.Backend, labels map[string]string) bool {
	l := b.Labels()
	for k, v := range labels {
		if l[k] != v {
			return false
		}
	}
	return true
}

func subset(all []*kernel.Backend, labels map[string]string) []*kernel.Backend {
	out := []*kernel.Backend{}
	for _, b := range all {
		if has(b, labels) {
			out = append(out, b)
		}
	}
	return out
}

// Update implements kernel.Router.
func (r *Router) Update(all []*kernel.Backend) {
	s := &routeState{pool: subset(all, r.cfg.DefaultLabels), all: len(all)}
	for _, rule := range r.cfg.Rules {
		rs := ruleState{backends: subset(all, rule.Labels)}
		if len(rs.backends) == 0 {
			if rule.Fallback == "default" {
				rs.backends = nil // the pool, decided per call
			} else {
				rs.err = status.Errorf(status.Unavailable, "route %s: no endpoint has labels %v", rule.Name, rule.Labels)
			}
		}
		s.rules = append(s.rules, rs)
	}
	r.state.Store(s)
}

func (r *Router) pool(s *routeState) ([]*kernel.Backend, error) {
	if len(s.pool) == 0 {
		return nil, status.Errorf(status.Unavailable, "route: no endpoint has the default pool's labels %v", r.cfg.DefaultLabels)
	}
	return s.pool, nil
}

// Route implements kernel.Router.
func (r *Router) Route(p *kernel.PickInfo) ([]*kernel.Backend, error) {
	s := r.state.Load()
	if s == nil {
		return nil, nil
	}
	for i := range r.cfg.Rules {
		if !matches(&r.cfg.Rules[i], p.Metadata) {
			continue
		}
		rs := &s.rules[i]
		if rs.err != nil {
			return nil, rs.err
		}
		if rs.backends == nil {
			return r.pool(s)
		}
		return rs.backends, nil
	}
	return r.pool(s)
}

func matches(r *Rule, md metadata.MD) bool {
	if r.Colour != "" && md.Get(Key) != r.Colour {
		return false
	}
	for k, v := range r.Match {
		if md.Get(k) != v {
			return false
		}
	}
	if r.Percent > 0 {
		v := md.Get(r.Key)
		if v == "" {
			return false
		}
		if float64(fnv64a(v)%10000) >= r.Percent*100 {
			return false
		}
	}
	return true
}

// fnv64a is FNV-1a: stable across processes and versions, unlike maphash.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
