package authz

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
)

// Authz decides calls. It is safe for concurrent use and immutable but for
// its counters; a configuration reload builds a new one.
type Authz struct {
	rules []rule
	log   *slog.Logger

	allowed, denied atomic.Uint64
	logs            kernel.LogLimiter
}

type rule struct {
	exact    map[string]bool // full method names
	services []string        // "/pkg.Service/" prefixes
	all      bool            // "*"
	ids      map[string]bool
	prefixes []string
	domains  []string // trust domains; "self" is the server's
	anyone   bool
}

// New returns the authorizer of c.
func New(c Config, log *slog.Logger) *Authz {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Authz{log: log}
	for _, r := range c.Rules {
		ru := rule{exact: map[string]bool{}, ids: map[string]bool{}, prefixes: r.IdentityPrefixes, domains: r.TrustDomains, anyone: r.Anyone}
		for _, m := range r.Methods {
			switch {
			case m == "*":
				ru.all = true
			case strings.HasSuffix(m, "/*"):
				ru.services = append(ru.services, strings.TrimSuffix(m, "*"))
			default:
				ru.exact[m] = true
			}
		}
		for _, id := range r.Identities {
			ru.ids[id] = true
		}
		a.rules = append(a.rules, ru)
	}
	return a
}

// Unary implements the unary server side.
func (a *Authz) Unary(ctx context.Context, req any, next kernel.UnaryHandler) (any, error) {
	if err := a.check(kernel.CallFromContext(ctx)); err != nil {
		return nil, err
	}
	return next(ctx, req)
}

// Stream implements the stream server side.
func (a *Authz) Stream(ss kernel.ServerStream, next kernel.StreamHandler) error {
	if err := a.check(kernel.CallFromContext(ss.Context())); err != nil {
		return err
	}
	return next(ss)
}

// check allows or denies call. The method is the canonical name of the
// method the call was routed to, not the path the client sent, so no
// spelling of a path reaches a method under another name.
func (a *Authz) check(call *kernel.ServerCall) error {
	if call == nil || call.Method == nil {
		a.denied.Add(1)
		return status.New(status.PermissionDenied, "authz: the call has no method to authorize")
	}
	method, id := call.Method.FullName, call.PeerIdentity
	if a.allows(method, id, call.TLS) {
		a.allowed.Add(1)
		return nil
	}
	a.denied.Add(1)
	a.logDenied(method, id, call)
	who := id
	if who == "" {
		who = "a caller without a verified identity"
	}
	return status.Errorf(status.PermissionDenied, "authz: %s may not call %s", who, method)
}

func (a *Authz) allows(method, id string, tls *kernel.TLS) bool {
	if len(a.rules) == 0 {
		// The default: the server's own trust domain.
		self := kernel.TrustDomain(tls.Identity())
		return self != "" && id != "" && kernel.TrustDomain(id) == self
	}
	for i := range a.rules {
		r := &a.rules[i]
		if r.matchesMethod(method) && r.matchesCaller(id, tls) {
			return true
		}
	}
	return false
}

func (r *rule) matchesMethod(m string) bool {
	if r.all || r.exact[m] {
		return true
	}
	for _, s := range r.services {
		if strings.HasPrefix(m, s) {
			return true
		}
	}
	return false
}

func (r *rule) matchesCaller(id string, tls *kernel.TLS) bool {
	if r.anyone {
		return true
	}
	if id == "" {
		return false
	}
	if r.ids[id] {
		return true
	}
	for _, p := range r.prefixes {
		if strings.HasPrefix(id, p) {
			return true
		}
	}
	if len(r.domains) > 0 {
		td := kernel.TrustDomain(id)
		for _, d := range r.domains {
			if d == "self" {
				d = kernel.TrustDomain(tls.Identity())
			}
			if td != "" && td == d {
				return true
			}
		}
	}
	return false
}

// logDenied logs a denial with the caller's identity, address and the
// method (never metadata or payload), at most 10 a second; the count of
// those not logged goes with the next one logged.
func (a *Authz) logDenied(method, id string, call *kernel.ServerCall) {
	ok, suppressed := a.logs.Allow()
	if !ok {
		return
	}
	peer := ""
	if call.Peer != nil {
		peer = call.Peer.String()
	}
	a.log.Warn("call denied", "method", method, "identity", id, "peer", peer, "protocol", call.Protocol, "denials_not_logged", suppressed)
}

// State implements kernel.Publisher: the counts of allowed and denied
// calls, and the number of rules.
func (a *Authz) State() any {
	return map[string]any{"allowed": a.allowed.Load(), "denied": a.denied.Load(), "rules": len(a.rules)}
}
