package kernel

import (
	"github.com/axonrpc/axon/kernel/status"
)

// SchemaKey is the request metadata key that carries a call's schema
// fingerprint (see SchemaCodec). Protocols may carry it more compactly, but
// hand it to Dispatcher.CheckSchema unchanged.
const SchemaKey = "axon-schema"

// SchemaCodec is a Codec whose bytes mean something only when both sides
// hold the same message schemas, such as the binary codec, which sends no
// field tags. The client sends the fingerprint of the method's messages once
// with the call (or once per method on a connection); the server checks it
// before decoding anything.
type SchemaCodec interface {
	Codec
	// Schema returns the fingerprint of a method whose request and
	// response messages are of the types of req and resp.
	Schema(req, resp any) string
	// CompareSchema returns nil when peer equals Schema(req, resp), and
	// otherwise a FAILED_PRECONDITION status naming the message that
	// differs and both fingerprints.
	CompareSchema(req, resp any, peer string) error
}

// StreamTypes tells a streaming call the types of its messages, so that a
// SchemaCodec can send their fingerprint. Generated clients pass it.
func StreamTypes[Req, Resp any]() CallOption {
	return func(c *ClientCall) { c.req, c.resp = new(Req), new(Resp) }
}

// CheckSchema checks the schema fingerprint peer that a call to r sent for
// codec c. Codecs that are not SchemaCodecs accept anything.
func (d *Dispatcher) CheckSchema(r *Route, c Codec, peer string) error {
	sc, ok := c.(SchemaCodec)
	if !ok {
		return nil
	}
	if want, ok := r.schemas[c.Name()]; ok && want == peer {
		return nil
	}
	if peer == "" {
		return status.Errorf(status.FailedPrecondition, "%s: codec %s needs the caller's schema fingerprint (metadata %q), and the call sent none", r.Method.FullName, c.Name(), SchemaKey)
	}
	return sc.CompareSchema(r.Method.NewRequest(), r.Method.NewResponse(), peer)
}
