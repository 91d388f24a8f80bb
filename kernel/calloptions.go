package kernel

import (
	"context"

	"github.com/axonrpc/axon/kernel/metadata"
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

	// Idempotent says the call is safe to send again after it may have
	// run (see Idempotent).
	Idempotent bool

	req, resp any        // message samples for Schema, from StreamTypes
	shape     StreamType // from the Open*Stream helpers
	spec      *Spec

	pick  PickInfo      // what the balancer and router see
	dones []func(error) // the guards' done functions of the attempt
}

// CallOption changes one call.
type CallOption func(*ClientCall)

// Header stores the response header metadata of the call in md.
func Header(md *metadata.MD) CallOption { return func(c *ClientCall) { c.Header = md } }

// Trailer stores the trailer metadata of the call in md.
func Trailer(md *metadata.MD) CallOption { return func(c *ClientCall) { c.Trailer = md } }

// Idempotent marks a call as safe to send again after it may have run, so
// that a retry interceptor may retry it; generated clients can pass it for
// methods whose idempotency_level is IDEMPOTENT or NO_SIDE_EFFECTS.
func Idempotent() CallOption { return markIdempotent }

func markIdempotent(c *ClientCall) { c.Idempotent = true }

// shapeOptions tell a streaming call its shape, for its Spec; the
// Open*Stream helpers that generated clients call pass them.
var shapeOptions = [...]CallOption{
	StreamTypeClient: func(c *ClientCall) { c.shape = StreamTypeClient },
	StreamTypeServer: func(c *ClientCall) { c.shape = StreamTypeServer },
	StreamTypeBidi:   func(c *ClientCall) { c.shape = StreamTypeBidi },
}

// ResponseMetadata returns where the call whose context is ctx (inside a
// client interceptor) stores its response header and trailer, as the Header
// and Trailer options set them; nil when it does not.
func ResponseMetadata(ctx context.Context) (header, trailer *metadata.MD) {
	c, _ := optionsOf(ctx)
	return c.Header, c.Trailer
}

// WithCallOptions returns ctx in which the call (inside a client
// interceptor) has opts after its own options: an interceptor that sends a
// call several times at once gives each attempt its own Header and Trailer
// this way.
func WithCallOptions(ctx context.Context, opts ...CallOption) context.Context {
	prev, _ := ctx.Value(optsKey{}).([]CallOption)
	all := make([]CallOption, 0, len(prev)+len(opts))
	return withCallOptions(ctx, append(append(all, prev...), opts...))
}

// optionsOf applies the call options in ctx to a blank call.
func optionsOf(ctx context.Context) (ClientCall, bool) {
	var c ClientCall
	opts, ok := ctx.Value(optsKey{}).([]CallOption)
	for _, o := range opts {
		o(&c)
	}
	return c, ok
}

type optsKey struct{}

func withCallOptions(ctx context.Context, opts []CallOption) context.Context {
	return context.WithValue(ctx, optsKey{}, opts)
}
