package authz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/kernel/tlstest"
	"github.com/axonrpc/axon/plugins/authz"
)

// fixed is credentials that never change.
type fixed struct{ m *kernel.Material }

func (f fixed) Material() *kernel.Material { return f.m }

// serverTLS is a listener's TLS whose certificate names id.
func serverTLS(t *testing.T, id string) *kernel.TLS {
	ca := tlstest.NewCA(t, "ca")
	leaf := ca.Issue(t, id, tlstest.Opts{})
	return &kernel.TLS{Mode: kernel.TLSMutual, Creds: fixed{&kernel.Material{Certificate: &leaf.TLS, Roots: tlstest.Pool(ca)}}}
}

func build(t *testing.T, yaml map[string]any) kernel.Interceptor {
	t.Helper()
	inst, err := authz.Factory.Build(kernel.BuildContext{}, config.Raw{Path: "server.interceptors[0].options", Tree: yaml})
	if err != nil {
		t.Fatal(err)
	}
	return inst.(kernel.Interceptor)
}

func rules(rs ...map[string]any) map[string]any {
	list := make([]any, len(rs))
	for i, r := range rs {
		list[i] = r
	}
	return map[string]any{"rules": list}
}

// TestDecide: which callers each kind of rule lets through, and the
// default without rules (the server's own trust domain).
func TestDecide(t *testing.T) {
	prod := serverTLS(t, "spiffe://prod/echo")
	echoSay := &kernel.MethodDesc{FullName: "/axon.example.v1.Echo/Say"}
	healthCheck := &kernel.MethodDesc{FullName: "/grpc.health.v1.Health/Check"}
	for _, tc := range []struct {
		name   string
		opts   map[string]any
		method *kernel.MethodDesc
		id     string
		tls    *kernel.TLS
		allow  bool
	}{
		{"default: own trust domain", nil, echoSay, "spiffe://prod/web", prod, true},
		{"default: other trust domain", nil, echoSay, "spiffe://dev/web", prod, false},
		{"default: no identity", nil, echoSay, "", prod, false},
		{"default: DNS identity", nil, echoSay, "web.prod.example", prod, false},
		{"default: plaintext listener", nil, echoSay, "spiffe://prod/web", nil, false},
		{"exact method, exact identity", rules(map[string]any{"methods": []any{"/axon.example.v1.Echo/Say"}, "identities": []any{"spiffe://prod/web"}}), echoSay, "spiffe://prod/web", prod, true},
		{"exact method, other identity", rules(map[string]any{"methods": []any{"/axon.example.v1.Echo/Say"}, "identities": []any{"spiffe://prod/web"}}), echoSay, "spiffe://prod/batch", prod, false},
		{"exact method, other method", rules(map[string]any{"methods": []any{"/axon.example.v1.Echo/Say"}, "identities": []any{"spiffe://prod/web"}}), healthCheck, "spiffe://prod/web", prod, false},
		{"service wildcard", rules(map[string]any{"methods": []any{"/axon.example.v1.Echo/*"}, "identity_prefixes": []any{"spiffe://prod/ns/web/"}}), echoSay, "spiffe://prod/ns/web/frontend", prod, true},
		{"service wildcard, prefix miss", rules(map[string]any{"methods": []any{"/axon.example.v1.Echo/*"}, "identity_prefixes": []any{"spiffe://prod/ns/web/"}}), echoSay, "spiffe://prod/ns/webx", prod, false},
		{"service wildcard is not a prefix of another service", rules(map[string]any{"methods": []any{"/axon.example.v1.Ech/*"}, "anyone": true}), echoSay, "spiffe://prod/web", prod, false},
		{"all methods, trust domain", rules(map[string]any{"methods": []any{"*"}, "trust_domains": []any{"partner"}}), echoSay, "spiffe://partner/x", prod, true},
		{"trust domain self", rules(map[string]any{"methods": []any{"*"}, "trust_domains": []any{"self"}}), echoSay, "spiffe://prod/x", prod, true},
		{"trust domain self, other", rules(map[string]any{"methods": []any{"*"}, "trust_domains": []any{"self"}}), echoSay, "spiffe://dev/x", prod, false},
		{"anyone, even without identity", rules(map[string]any{"methods": []any{"/grpc.health.v1.Health/*"}, "anyone": true}), healthCheck, "", nil, true},
		{"anyone for health is not anyone for echo", rules(map[string]any{"methods": []any{"/grpc.health.v1.Health/*"}, "anyone": true}), echoSay, "", nil, false},
		{"second rule allows", rules(
			map[string]any{"methods": []any{"/grpc.health.v1.Health/*"}, "anyone": true},
			map[string]any{"methods": []any{"*"}, "identities": []any{"spiffe://prod/admin"}}), echoSay, "spiffe://prod/admin", prod, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ic := build(t, tc.opts)
			call := &kernel.ServerCall{Method: tc.method, PeerIdentity: tc.id, TLS: tc.tls, Protocol: "axon"}
			ctx := kernel.NewCallContext(context.Background(), call)
			ran := false
			_, err := ic.Server(ctx, nil, func(context.Context, any) (any, error) { ran = true; return nil, nil })
			if tc.allow {
				if err != nil || !ran {
					t.Fatalf("denied: %v", err)
				}
				return
			}
			if ran {
				t.Fatal("the handler ran")
			}
			if se := status.FromError(err); se == nil || se.Code() != status.PermissionDenied || !strings.Contains(se.Message(), tc.method.FullName) {
				t.Fatalf("error %v, want PERMISSION_DENIED naming the method", err)
			}
		})
	}
}

// TestConfigErrors: bad rules are refused with the key path.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		rule map[string]any
		want string
	}{
		{map[string]any{"methods": []any{"axon.example.v1.Echo/Say"}, "anyone": true}, "rules[0].methods[0]"},
		{map[string]any{"methods": []any{"/axon.example.v1.Echo"}, "anyone": true}, "rules[0].methods[0]"},
		{map[string]any{"methods": []any{"//axon.example.v1.Echo/Say"}, "anyone": true}, "rules[0].methods[0]"},
		{map[string]any{"methods": []any{"/axon.example.v1.Echo/S*"}, "anyone": true}, "rules[0].methods[0]"},
		{map[string]any{"methods": []any{"/*/Say"}, "anyone": true}, "rules[0].methods[0]"},
		{map[string]any{"methods": []any{"*"}}, "rules[0].identities"},
		{map[string]any{"methods": []any{"*"}, "identity_prefixes": []any{""}}, "rules[0].identity_prefixes[0]"},
	} {
		_, err := authz.Factory.Build(kernel.BuildContext{}, config.Raw{Path: "server.interceptors[0].options", Tree: rules(tc.rule)})
		if err == nil || !strings.Contains(err.Error(), "server.interceptors[0].options."+tc.want) {
			t.Errorf("rule %v: %v, want an error naming %s", tc.rule, err, tc.want)
		}
	}
}

// fakeStream is a server stream that only has a context.
type fakeStream struct {
	kernel.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

// TestStream: streaming calls are decided like unary ones, before the
// handler runs.
func TestStream(t *testing.T) {
	ic := build(t, rules(map[string]any{"methods": []any{"/axon.example.v1.Echo/*"}, "identities": []any{"spiffe://prod/web"}}))
	for _, tc := range []struct {
		id    string
		allow bool
	}{{"spiffe://prod/web", true}, {"spiffe://prod/batch", false}, {"", false}} {
		call := &kernel.ServerCall{Method: &kernel.MethodDesc{FullName: "/axon.example.v1.Echo/Expand"}, PeerIdentity: tc.id}
		ran := false
		err := ic.StreamServer(fakeStream{ctx: kernel.NewCallContext(context.Background(), call)}, func(kernel.ServerStream) error { ran = true; return nil })
		if ran != tc.allow || (err == nil) != tc.allow {
			t.Errorf("identity %q: ran %v, err %v; want allowed %v", tc.id, ran, err, tc.allow)
		}
	}
}

// TestAllowAllocatesNothing: deciding an allowed call allocates nothing,
// with the default rule (trust domains compared) and with explicit rules.
func TestAllowAllocatesNothing(t *testing.T) {
	prod := serverTLS(t, "spiffe://prod/echo")
	call := &kernel.ServerCall{Method: &kernel.MethodDesc{FullName: "/axon.example.v1.Echo/Say"}, PeerIdentity: "spiffe://prod/web", TLS: prod}
	ctx := kernel.NewCallContext(context.Background(), call)
	next := func(context.Context, any) (any, error) { return nil, nil }
	for name, opts := range map[string]map[string]any{
		"default": nil,
		"rules":   rules(map[string]any{"methods": []any{"/axon.example.v1.Echo/*"}, "trust_domains": []any{"self"}}),
	} {
		ic := build(t, opts)
		if n := testing.AllocsPerRun(100, func() { ic.Server(ctx, nil, next) }); n != 0 {
			t.Errorf("%s: %v allocations per allowed call", name, n)
		}
	}
}
