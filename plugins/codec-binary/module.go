// Package binary is Axon's binary codec (content subtype "binary"): a
// compact, tagless, schema-ordered encoding written and read by methods that
// protoc-gen-axon generates for each message (see the wire package and the
// README). A message is encoded as its body alone; the schema fingerprints
// travel once per call instead: Codec is a kernel.SchemaCodec, and a
// protocol compares the caller's Schema with the server's (through
// kernel.Dispatcher.CheckSchema) before it decodes a message of the call.
package binary

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/fx"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/plugins/codec-binary/wire"
)

// Config is the codec's options block; it has no keys.
type Config struct{}

// Codec marshals messages that have generated binary methods (wire.Message).
// It is safe for concurrent use. It implements kernel.SchemaCodec: its
// encoding carries no fingerprint, so a protocol must compare Schema with the
// peer's before decoding; Marshal and Unmarshal alone check no schema.
type Codec struct {
	opts       wire.Options
	maxMessage int

	// schemas caches Schema's strings by fingerprint pair (copy on write),
	// so that a client's per-call Schema allocates nothing.
	schemas  atomic.Pointer[map[[2]uint64]string]
	schemaMu sync.Mutex
}

var _ kernel.SchemaCodec = (*Codec)(nil)

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

// Marshal implements kernel.Codec: it appends v's encoding (no
// fingerprint) to dst, allocating only when dst lacks capacity.
func (*Codec) Marshal(dst []byte, v any) ([]byte, error) {
	m, ok := v.(wire.Message)
	if !ok {
		return nil, noMethods(v)
	}
	return m.AxonAppend(dst), nil
}

// Unmarshal implements kernel.Codec. It checks no schema fingerprint (the
// protocol did, with CompareSchema, before the call's first message); an
// input over the message limit is RESOURCE_EXHAUSTED; malformed input is a
// *wire.DecodeError. src is not retained.
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

// schemaLen is the length of a Schema string: two fingerprints of 16 hex
// digits and the dot between them.
const schemaLen = 2*16 + 1

// maxCachedSchemas bounds Schema's cache; a program has one entry per
// request and response type pair, far fewer than this.
const maxCachedSchemas = 4096

// Schema implements kernel.SchemaCodec: it returns the schema fingerprints
// (AxonFingerprint) of req's and resp's types as 16 lowercase hex digits
// each, joined by a dot: "<request>.<response>", 33 bytes, such as
// "ecfe8888dbdd6f4c.8bb2b5df94bef8ee". A type without binary methods counts
// as fingerprint 0 (the codec refuses to encode it anyway). It allocates
// only the first time it sees a pair of fingerprints.
func (c *Codec) Schema(req, resp any) string {
	k := [2]uint64{fingerprint(req), fingerprint(resp)}
	if m := c.schemas.Load(); m != nil {
		if s, ok := (*m)[k]; ok {
			return s
		}
	}
	return c.addSchema(k)
}

// addSchema formats the Schema string of k and caches it.
func (c *Codec) addSchema(k [2]uint64) string {
	b := make([]byte, 0, schemaLen)
	b = appendHex16(b, k[0])
	b = append(b, '.')
	s := string(appendHex16(b, k[1]))
	c.schemaMu.Lock()
	defer c.schemaMu.Unlock()
	m := make(map[[2]uint64]string)
	if old := c.schemas.Load(); old != nil {
		if len(*old) >= maxCachedSchemas {
			return s
		}
		maps.Copy(m, *old)
	}
	m[k] = s
	c.schemas.Store(&m)
	return s
}

// appendHex16 appends v as exactly 16 lowercase hex digits.
func appendHex16(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[v>>uint(shift)&0xf])
	}
	return b
}

func fingerprint(v any) uint64 {
	if m, ok := v.(wire.Message); ok {
		return m.AxonFingerprint()
	}
	return 0
}

// CompareSchema implements kernel.SchemaCodec: it returns nil when peer,
// the Schema string the caller sent, holds the fingerprints of req's and
// resp's types. Otherwise it returns a FAILED_PRECONDITION *status.Error:
// for each message that differs, its role, its type name and both
// fingerprints, the peer's as "sender" and this side's as "receiver" (the
// wording of wire.FingerprintMismatch); or, when peer is not two 16-digit
// hex numbers joined by a dot, an error saying so that quotes (at most 80
// bytes of) peer.
func (c *Codec) CompareSchema(req, resp any, peer string) error {
	sender, ok := parseSchema(peer)
	if !ok {
		q := peer
		if len(q) > 80 {
			q = q[:80] + "..."
		}
		return status.Errorf(status.FailedPrecondition,
			"codec.binary: malformed schema fingerprint %q from the peer: want two 16-digit hex numbers joined by a dot (request.response)", q)
	}
	var diffs []string
	for i, v := range []any{req, resp} {
		if local := fingerprint(v); sender[i] != local {
			diffs = append(diffs, [2]string{"request", "response"}[i]+" "+wire.FingerprintMismatch(typeName(v), sender[i], local).Message())
		}
	}
	if diffs == nil {
		return nil
	}
	return status.New(status.FailedPrecondition, "codec.binary: "+strings.Join(diffs, "; "))
}

// parseSchema parses a Schema string.
func parseSchema(s string) (fp [2]uint64, ok bool) {
	if len(s) != schemaLen || s[16] != '.' {
		return fp, false
	}
	for i, part := range []string{s[:16], s[17:]} {
		v, err := strconv.ParseUint(part, 16, 64)
		if err != nil {
			return fp, false
		}
		fp[i] = v
	}
	return fp, true
}

// typeName is the full protobuf name of v's type, or its Go type when it
// has no descriptor.
func typeName(v any) string {
	if pm, ok := v.(interface{ ProtoReflect() protoreflect.Message }); ok {
		return string(pm.ProtoReflect().Descriptor().FullName())
	}
	return fmt.Sprintf("%T", v)
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
