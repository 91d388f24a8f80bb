// Package authz is a server interceptor that authorizes calls by the
// caller's verified identity (the certificate it presented over mutual TLS,
// kernel.PeerIdentity): rules allow methods to identities, identity
// prefixes or trust domains, and a call no rule allows fails with
// PERMISSION_DENIED before its handler runs. It fails closed: a caller
// without a verified identity matches only rules that allow anyone.
package authz

import (
	"strconv"
	"strings"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// Rule allows the methods it names to the callers it names.
type Rule struct {
	// Methods are full method names ("/pkg.Service/Method"), service
	// wildcards ("/pkg.Service/*") or "*" (every method).
	Methods []string `yaml:"methods" required:"true"`
	// Identities are exact identities (SPIFFE IDs or DNS names).
	Identities []string `yaml:"identities"`
	// IdentityPrefixes match identities that begin with them, such as
	// "spiffe://prod/ns/web/".
	IdentityPrefixes []string `yaml:"identity_prefixes"`
	// TrustDomains match SPIFFE IDs of these trust domains; "self" is the
	// server's own (that of the certificate its listener presents).
	TrustDomains []string `yaml:"trust_domains"`
	// Anyone allows every caller, with or without an identity (a health
	// check, a public method).
	Anyone bool `yaml:"anyone"`
}

// Validate checks the method patterns and that the rule names callers.
func (r *Rule) Validate() error {
	if len(r.Methods) == 0 {
		return config.FieldError("methods", "[]", `at least one method pattern: "/pkg.Service/Method", "/pkg.Service/*" or "*"`)
	}
	for i, m := range r.Methods {
		if !validPattern(m) {
			return config.FieldError("methods["+strconv.Itoa(i)+"]", m, `a method pattern: "/pkg.Service/Method", "/pkg.Service/*" or "*"`)
		}
	}
	if !r.Anyone && len(r.Identities)+len(r.IdentityPrefixes)+len(r.TrustDomains) == 0 {
		return config.FieldError("identities", "[]", "callers to allow: identities, identity_prefixes, trust_domains or anyone: true")
	}
	for i, p := range r.IdentityPrefixes {
		if p == "" {
			return config.FieldError("identity_prefixes["+strconv.Itoa(i)+"]", p, `a non-empty prefix (to allow anyone, use anyone: true)`)
		}
	}
	return nil
}

// Config is the interceptor's options block.
type Config struct {
	// Rules allow calls; a call that no rule allows is denied. With no
	// rules, any caller whose SPIFFE ID is in the server's own trust
	// domain is allowed (the default for a mutual-TLS listener).
	Rules []Rule `yaml:"rules"`
}

// Factory builds the interceptor, named "authz".
var Factory = kernel.NewFactory(kernel.KindInterceptor, "authz", func() Config { return Config{} },
	func(bc kernel.BuildContext, c Config) (kernel.Interceptor, error) {
		a := New(c, bc.Logger)
		return kernel.Interceptor{Server: a.Unary, StreamServer: a.Stream, Instance: a}, nil
	})

// Module contributes the authz interceptor to an Axon application.
var Module = fx.Module("authz", kernel.ProvideFactory(Factory))

// validPattern reports whether p is "*", "/pkg.Service/*" or
// "/pkg.Service/Method", with nothing that a canonical method name cannot
// hold (no empty parts, no further slashes, no spaces).
func validPattern(p string) bool {
	if p == "*" {
		return true
	}
	if !strings.HasPrefix(p, "/") {
		return false
	}
	svc, method, ok := strings.Cut(p[1:], "/")
	if !ok || svc == "" || method == "" || strings.ContainsAny(svc, "/* \t") || strings.ContainsAny(method, "/ \t") {
		return false
	}
	return method == "*" || !strings.Contains(method, "*")
}
