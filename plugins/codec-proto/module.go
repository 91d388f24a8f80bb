// Package proto is the Protocol Buffers codec (content subtype "proto"),
// built on google.golang.org/protobuf.
package proto

import (
	"fmt"

	"go.uber.org/fx"
	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/kernel"
)

// Config is the codec's options block; it has no keys yet.
type Config struct{}

// Codec marshals proto.Message values. It is safe for concurrent use. The
// zero Codec uses protobuf's default nesting limit.
type Codec struct {
	// MaxDepth bounds message nesting when decoding; zero means protobuf's
	// default (10000). The factory sets it from Limits.MaxDecodeDepth.
	MaxDepth int
}

// Name implements kernel.Codec.
func (Codec) Name() string { return "proto" }

// Marshal implements kernel.Codec; it appends to dst without retaining it.
func (Codec) Marshal(dst []byte, v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec.proto: %T is not a proto.Message", v)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

// Unmarshal implements kernel.Codec. The decoded message does not alias src.
func (c Codec) Unmarshal(src []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec.proto: %T is not a proto.Message", v)
	}
	return proto.UnmarshalOptions{RecursionLimit: c.MaxDepth}.Unmarshal(src, m)
}

// Factory builds the codec, named "proto", with the nesting limit of the
// side that builds it.
var Factory = kernel.NewFactory(kernel.KindCodec, "proto", func() Config { return Config{} },
	func(bc kernel.BuildContext, _ Config) (kernel.Codec, error) {
		return Codec{MaxDepth: bc.Limits.WithDefaults().MaxDecodeDepth}, nil
	})

// Module contributes the proto codec to an Axon application.
var Module = fx.Module("codec.proto", kernel.ProvideFactory(Factory))
