package kernel

import (
	"context"
)

// UnaryServerInterceptor wraps a server's handling of a unary call. It may
// act before and after calling next, or answer without calling it. The call's
// description is in ctx (see CallFromContext).
type UnaryServerInterceptor func(ctx context.Context, req any, next UnaryHandler) (any, error)

// UnaryInvoker sends a unary call from a client. spec describes the call;
// it is shared and must not be modified.
type UnaryInvoker func(ctx context.Context, spec *Spec, req, resp any) error

// UnaryClientInterceptor wraps a client's unary call. It may act before and
// after calling next, call it several times (retries), or fail without it.
// spec is computed once per method and shared: it must not be modified.
type UnaryClientInterceptor func(ctx context.Context, spec *Spec, req, resp any, next UnaryInvoker) error

// Interceptor is what an interceptor plugin builds: middleware for the server
// side, the client side or both. A nil side means the plugin does not act
// there; naming it in that side's chain is a configuration error.
// Unary and streaming sides are separate: an interceptor without a stream
// side leaves streaming calls alone.
type Interceptor struct {
	Server       UnaryServerInterceptor
	Client       UnaryClientInterceptor
	StreamServer StreamServerInterceptor
	StreamClient StreamClientInterceptor
	// Guard, on the client side, admits each attempt once its endpoint is
	// picked and learns its outcome (see Guard); a circuit breaker per
	// endpoint lives here.
	Guard Guard
	// Instance, when not nil, is the value behind the sides, which takes
	// part in the lifecycle of the generation (or client policy) that
	// built it: it is started if it is a Starter, cleaned up exactly once
	// if it is an io.Closer, and its state is in the live view if it is a
	// Publisher.
	Instance any
}

// chainServer composes interceptors around h, outermost first. The chain is
// built once per generation, so a call allocates nothing for it.
func chainServer(ics []UnaryServerInterceptor, h UnaryHandler) UnaryHandler {
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], h
		h = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, next) }
	}
	return h
}

// chainClient composes interceptors around inv, outermost first.
func chainClient(ics []UnaryClientInterceptor, inv UnaryInvoker) UnaryInvoker {
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], inv
		inv = func(ctx context.Context, spec *Spec, req, resp any) error {
			return ic(ctx, spec, req, resp, next)
		}
	}
	return inv
}
