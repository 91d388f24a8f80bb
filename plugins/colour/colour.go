package colour

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// With returns ctx whose outgoing calls carry colour c.
func With(ctx context.Context, c string) context.Context {
	md := metadata.FromOutgoingContext(ctx).Copy()
	if md == nil {
		md = metadata.MD{}
	}
	md.Set(Key, c)
	return metadata.NewOutgoingContext(ctx, md)
}

// From returns the colour of the call ctx belongs to: the outgoing colour
// if one is set, otherwise the incoming call's, otherwise "".
func From(ctx context.Context) string {
	if c := metadata.FromOutgoingContext(ctx).Get(Key); c != "" {
		return c
	}
	return metadata.FromIncomingContext(ctx).Get(Key)
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
	if p.colour != "" && in.Get(Key) == "" {
		if out == nil {
			out = metadata.FromOutgoingContext(ctx)
		}
		if out.Get(Key) == "" {
			kv = append(kv, Key, p.colour)
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
