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

// Codec marshals proto.Message values. It is safe for concurrent use.
type Codec struct{}

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
func (Codec) Unmarshal(src []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec.proto: %T is not a proto.Message", v)
	}
	return proto.Unmarshal(src, m)
}

// Factory builds the codec, named "proto".
var Factory = kernel.NewFactory(kernel.KindCodec, "proto", func() Config { return Config{} },
	func(kernel.BuildContext, Config) (kernel.Codec, error) { return Codec{}, nil })

// Module contributes the proto codec to an Axon application.
var Module = fx.Module("codec.proto", kernel.ProvideFactory(Factory))
