// Package json is the JSON codec (content subtype "json"): the canonical
// proto3 JSON mapping of google.golang.org/protobuf/encoding/protojson.
package json

import (
	"fmt"

	"go.uber.org/fx"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/kernel"
)

// Config is the codec's options block; it has no keys.
type Config struct{}

// Codec marshals proto.Message values as JSON. It is safe for concurrent
// use.
type Codec struct {
	unmarshal protojson.UnmarshalOptions
}

// New returns the codec with the nesting limit of l (MaxDecodeDepth; zero
// means the default). Unknown JSON fields are ignored, as the proto codec
// skips unknown fields, so that a newer peer can add fields.
func New(l kernel.Limits) *Codec {
	return &Codec{unmarshal: protojson.UnmarshalOptions{DiscardUnknown: true, RecursionLimit: l.WithDefaults().MaxDecodeDepth}}
}

// Name implements kernel.Codec.
func (*Codec) Name() string { return "json" }

// Marshal implements kernel.Codec; it appends to dst without retaining it.
// Field names are lowerCamelCase and fields holding their zero value are
// omitted, as protojson does by default.
func (*Codec) Marshal(dst []byte, v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec.json: %T is not a proto.Message", v)
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, m)
}

// Unmarshal implements kernel.Codec. The decoded message does not alias src.
func (c *Codec) Unmarshal(src []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec.json: %T is not a proto.Message", v)
	}
	if err := c.unmarshal.Unmarshal(src, m); err != nil {
		return fmt.Errorf("codec.json: %w", err)
	}
	return nil
}

// Factory builds the codec, named "json".
var Factory = kernel.NewFactory(kernel.KindCodec, "json", func() Config { return Config{} },
	func(bc kernel.BuildContext, _ Config) (kernel.Codec, error) { return New(bc.Limits), nil })

// Module contributes the JSON codec to an Axon application.
var Module = fx.Module("codec.json", kernel.ProvideFactory(Factory))
