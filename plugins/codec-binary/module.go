// Package binary is Axon's binary codec (content subtype "binary"): a
// compact, tagless, schema-ordered encoding written and read by methods that
// protoc-gen-axon generates for each message (see the wire package and the
// README). A top-level message starts with its schema fingerprint; a
// message whose fingerprint differs from the receiver's is refused with
// FAILED_PRECONDITION before a byte of it is decoded.
package binary

import (
	"fmt"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/plugins/codec-binary/wire"
)

// Config is the codec's options block; it has no keys.
type Config struct{}

// Codec marshals messages that have generated binary methods (wire.Message).
// It is safe for concurrent use.
type Codec struct {
	opts       wire.Options
	maxMessage int
}

// New returns the codec with the decode limits of l (MaxDecodeDepth and
// MaxMessage; zero fields take their defaults). Decoded strings and bytes
// share one private copy of the input (wire.Arena): the input is not
// retained, and a decoded message keeps that copy alive.
func New(l kernel.Limits) *Codec {
	l = l.WithDefaults()
	return &Codec{opts: wire.Options{MaxDepth: l.MaxDecodeDepth, Strings: wire.Arena}, maxMessage: int(l.MaxMessage)}
}

// Name implements kernel.Codec.
func (*Codec) Name() string { return "binary" }

// Marshal implements kernel.Codec: it appends v's fingerprint and encoding
// to dst, allocating only when dst lacks capacity.
func (*Codec) Marshal(dst []byte, v any) ([]byte, error) {
	m, ok := v.(wire.Message)
	if !ok {
		return nil, noMethods(v)
	}
	return wire.Marshal(dst, m), nil
}

// Unmarshal implements kernel.Codec. A fingerprint mismatch is a
// FAILED_PRECONDITION *status.Error naming the message and both
// fingerprints; an input over the message limit is RESOURCE_EXHAUSTED;
// malformed input is a *wire.DecodeError. src is not retained.
func (c *Codec) Unmarshal(src []byte, v any) error {
	m, ok := v.(wire.Message)
	if !ok {
		return noMethods(v)
	}
	if len(src) > c.maxMessage {
		return status.Errorf(status.ResourceExhausted, "codec.binary: message of %d bytes exceeds the limit of %d bytes", len(src), c.maxMessage)
	}
	return wire.Unmarshal(src, m, c.opts)
}

func noMethods(v any) error {
	return fmt.Errorf("codec.binary: %T has no binary methods: generate its .proto with protoc-gen-axon, or use the proto codec", v)
}

// Factory builds the codec, named "binary", with the limits of the side
// that builds it.
var Factory = kernel.NewFactory(kernel.KindCodec, "binary", func() Config { return Config{} },
	func(bc kernel.BuildContext, _ Config) (kernel.Codec, error) { return New(bc.Limits), nil })

// Module contributes the binary codec to an Axon application.
var Module = fx.Module("codec.binary", kernel.ProvideFactory(Factory))
