// Package metadata holds the key-value pairs that travel with a call: request
// metadata from client to server, header and trailer metadata back. Keys are
// lower-case ASCII; a key may carry several values, in order.
package metadata

import (
	"context"
	"strings"
)

// MD maps lower-case keys to their values. The zero value (nil) is empty and
// ready to read; write to a map made by New or make.
type MD map[string][]string

// New returns metadata from key, value pairs; keys are lower-cased. An odd
// trailing key is ignored.
func New(kv ...string) MD {
	md := make(MD, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		md.Append(kv[i], kv[i+1])
	}
	return md
}

// Get returns the first value of key, or "".
func (md MD) Get(key string) string {
	if v := md[strings.ToLower(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key.
func (md MD) Set(key string, values ...string) { md[strings.ToLower(key)] = values }

// Append adds values to key.
func (md MD) Append(key string, values ...string) {
	k := strings.ToLower(key)
	md[k] = append(md[k], values...)
}

// Len returns the number of keys.
func (md MD) Len() int { return len(md) }

// Copy returns a deep copy of md.
func (md MD) Copy() MD {
	out := make(MD, len(md))
	for k, v := range md {
		out[k] = append([]string(nil), v...)
	}
	return out
}

type incomingKey struct{}
type outgoingKey struct{}

// NewIncomingContext returns ctx carrying md as the metadata a server received.
// Protocols call it; handlers read it with FromIncomingContext.
func NewIncomingContext(ctx context.Context, md MD) context.Context {
	return context.WithValue(ctx, incomingKey{}, md)
}

// FromIncomingContext returns the metadata the server received with the call.
// The caller must not modify it.
func FromIncomingContext(ctx context.Context) MD {
	md, _ := ctx.Value(incomingKey{}).(MD)
	return md
}

// NewOutgoingContext returns ctx whose calls send md, replacing any metadata
// ctx already carries for outgoing calls.
func NewOutgoingContext(ctx context.Context, md MD) context.Context {
	return context.WithValue(ctx, outgoingKey{}, md)
}

// AppendToOutgoingContext returns ctx whose calls also send the given key,
// value pairs. It does not modify the metadata ctx already carries.
func AppendToOutgoingContext(ctx context.Context, kv ...string) context.Context {
	md := FromOutgoingContext(ctx).Copy()
	for i := 0; i+1 < len(kv); i += 2 {
		md.Append(kv[i], kv[i+1])
	}
	return NewOutgoingContext(ctx, md)
}

// FromOutgoingContext returns the metadata calls made with ctx will send. The
// caller must not modify it.
func FromOutgoingContext(ctx context.Context) MD {
	md, _ := ctx.Value(outgoingKey{}).(MD)
	return md
}
