package colour_test

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/baggage"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/plugins/colour"
)

var spec = kernel.NewSpec("/t.S/M", kernel.StreamTypeUnary, false)

func TestPropagation(t *testing.T) {
	p := colour.NewPropagator(colour.InterceptorConfig{Propagate: []string{colour.Key, "X-Tenant"}})
	var sent metadata.MD
	next := func(ctx context.Context, _ *kernel.Spec, _, _ any) error {
		sent = metadata.FromOutgoingContext(ctx)
		return nil
	}
	in := metadata.NewIncomingContext(context.Background(), metadata.New(colour.Key, "canary", "x-tenant", "acme", "other", "no"))
	p.Unary(in, spec, nil, nil, next)
	if sent.Get(colour.Key) != "canary" || sent.Get("x-tenant") != "acme" || sent.Get("other") != "" {
		t.Errorf("handler's outgoing call carried %v", sent)
	}
	if colour.From(in) != "canary" {
		t.Errorf("From(incoming) = %q", colour.From(in))
	}
	// An explicit outgoing colour wins over the incoming one.
	p.Unary(colour.With(in, "blue"), spec, nil, nil, next)
	if got := sent[colour.Key]; len(got) != 1 || got[0] != "blue" {
		t.Errorf("explicit colour: sent %v", got)
	}
	// No incoming call: nothing added.
	p.Unary(context.Background(), spec, nil, nil, next)
	if sent != nil {
		t.Errorf("a call outside a handler carried %v", sent)
	}
	// A client with a colour of its own.
	q := colour.NewPropagator(colour.InterceptorConfig{Colour: "canary"})
	q.Unary(context.Background(), spec, nil, nil, next)
	if sent.Get(colour.Key) != "canary" {
		t.Errorf("client colour: sent %v", sent)
	}
}

// TestBaggage: a colour travels as the W3C baggage member axon-colour too:
// With puts it in the context's baggage (which the tracing interceptor
// sends), and a call whose colour came only as a baggage member (from an
// OpenTelemetry client) has that colour, carried on as metadata.
func TestBaggage(t *testing.T) {
	ctx := colour.With(context.Background(), "canary")
	if got := baggage.FromContext(ctx).Member(colour.BaggageKey).Value(); got != "canary" {
		t.Errorf("With: baggage member %q, want canary", got)
	}
	in := metadata.NewIncomingContext(context.Background(), metadata.New("baggage", "tenant=acme,axon-colour=blue"))
	if got := colour.From(in); got != "blue" {
		t.Errorf("From(incoming baggage) = %q, want blue", got)
	}
	var sent metadata.MD
	var sentCtx context.Context
	next := func(ctx context.Context, _ *kernel.Spec, _, _ any) error {
		sent, sentCtx = metadata.FromOutgoingContext(ctx), ctx
		return nil
	}
	colour.NewPropagator(colour.InterceptorConfig{Propagate: []string{colour.Key}}).Unary(in, spec, nil, nil, next)
	if sent.Get(colour.Key) != "blue" || baggage.FromContext(sentCtx).Member(colour.BaggageKey).Value() != "blue" {
		t.Errorf("carried %v, baggage %v; want axon-colour blue in both", sent, baggage.FromContext(sentCtx))
	}
	// Metadata wins over baggage.
	both := metadata.NewIncomingContext(context.Background(), metadata.New(colour.Key, "red", "baggage", "axon-colour=blue"))
	if got := colour.From(both); got != "red" {
		t.Errorf("From(metadata and baggage) = %q, want red", got)
	}
}

func backends() []*kernel.Backend {
	mk := func(addr, version string) *kernel.Backend {
		return kernel.NewBackend(kernel.Endpoint{Address: addr, Labels: map[string]string{"version": version}}, 0)
	}
	return []*kernel.Backend{mk("a", "v1"), mk("b", "v1"), mk("c", "v2")}
}

func addrs(bs []*kernel.Backend) string {
	s := ""
	for _, b := range bs {
		s += b.Address()
	}
	return s
}

func build(t *testing.T, tree map[string]any) kernel.Router {
	t.Helper()
	r, err := colour.RouterFactory.Build(kernel.BuildContext{}, config.Raw{Path: "client.router.options", Tree: tree})
	if err != nil {
		t.Fatal(err)
	}
	return r.(kernel.Router)
}

func TestRules(t *testing.T) {
	r := build(t, map[string]any{
		"default_labels": map[string]any{"version": "v1"},
		"rules": []any{
			map[string]any{"colour": "canary", "labels": map[string]any{"version": "v2"}},
			map[string]any{"match": map[string]any{"x-tenant": "beta"}, "labels": map[string]any{"version": "v3"}, "fallback": "default"},
			map[string]any{"match": map[string]any{"x-tenant": "gamma"}, "labels": map[string]any{"version": "v3"}},
			map[string]any{"percent": 30, "key": "x-user", "labels": map[string]any{"version": "v2"}},
		},
	})
	r.Update(backends())
	for _, tc := range []struct {
		md   metadata.MD
		want string
		code status.Code
	}{
		{nil, "ab", status.OK},
		{metadata.New(colour.Key, "canary"), "c", status.OK},
		{metadata.New(colour.Key, "blue"), "ab", status.OK},
		{metadata.New("x-tenant", "beta"), "ab", status.OK},
		{metadata.New("x-tenant", "gamma"), "", status.Unavailable},
	} {
		got, err := r.Route(&kernel.PickInfo{Method: "/t.S/M", Metadata: tc.md})
		if status.CodeOf(err) != tc.code || addrs(got) != tc.want {
			t.Errorf("%v: routed to %q (%v), want %q (%v)", tc.md, addrs(got), err, tc.want, tc.code)
		}
	}
	// Percent: stable per user, about the configured share.
	canary := 0
	for u := range 1000 {
		pi := &kernel.PickInfo{Metadata: metadata.New("x-user", fmt.Sprint(u))}
		a, _ := r.Route(pi)
		b, _ := r.Route(pi)
		if addrs(a) != addrs(b) {
			t.Fatalf("user %d routed to %s then %s", u, addrs(a), addrs(b))
		}
		if addrs(a) == "c" {
			canary++
		}
	}
	if canary < 200 || canary > 400 {
		t.Errorf("30%% rule sent %d of 1000 users to v2", canary)
	}
}

func TestEmptyDefaultPoolFails(t *testing.T) {
	r := build(t, map[string]any{"default_labels": map[string]any{"version": "v9"}})
	r.Update(backends())
	if _, err := r.Route(&kernel.PickInfo{}); status.CodeOf(err) != status.Unavailable {
		t.Errorf("empty default pool: %v", err)
	}
}

func TestRouterConfigIsStrict(t *testing.T) {
	for _, tree := range []map[string]any{
		{"rules": []any{map[string]any{"labels": map[string]any{"v": "1"}}}},
		{"rules": []any{map[string]any{"colour": "x"}}},
		{"rules": []any{map[string]any{"percent": 10, "labels": map[string]any{"v": "1"}}}},
		{"rules": []any{map[string]any{"colour": "x", "labels": map[string]any{"v": "1"}, "fallback": "random"}}},
	} {
		if _, err := colour.RouterFactory.Build(kernel.BuildContext{}, config.Raw{Path: "client.router.options", Tree: tree}); err == nil {
			t.Errorf("accepted %v", tree)
		}
	}
}
