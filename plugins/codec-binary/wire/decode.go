package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/axonrpc/axon/kernel/status"
)

// DefaultMaxDepth is the nesting limit when Options.MaxDepth is zero
// (kernel.Limits.MaxDecodeDepth's default).
const DefaultMaxDepth = 100

// Strings says where decoded string and bytes fields get their memory.
type Strings uint8

const (
	// Arena copies decoded strings and bytes fields into a few shared
	// chunks: the first holds 128 bytes, each next one twice as many, none
	// more than the input has left, and a value that fits no chunk gets
	// one of its own size. So a message with many small strings costs a
	// few allocations and at most about twice their size. The input is not
	// retained; a chunk stays alive while any string or bytes in it is
	// reachable. Bytes fields are capped (len == cap), so appending to one
	// never overwrites another.
	Arena Strings = iota
	// Copy allocates every string and bytes field separately.
	Copy
	// Alias makes strings and bytes fields point into the input itself:
	// no copy at all. The caller must not modify or reuse the input while
	// the decoded message, or any string or bytes taken from it, is in
	// use. The codec never uses it (the kernel's Codec contract forbids
	// retaining the input); it is for callers of Unmarshal that own their
	// buffer.
	Alias
)

// Options configure Unmarshal.
type Options struct {
	// MaxDepth bounds message nesting; the top-level message is depth 1.
	// Zero means DefaultMaxDepth.
	MaxDepth int
	// Strings selects the ownership of decoded strings and bytes.
	Strings Strings
}

// Unmarshal decodes src, the encoding of one message, into m after
// resetting it; it is m.AxonUnmarshal(src, o). It does not check a schema
// fingerprint (the encoding holds none: see the package doc); malformed
// input is a *DecodeError. Unmarshal never panics, checks every length and
// count against the bytes left before it slices or allocates, and rejects
// trailing bytes.
func Unmarshal(src []byte, m Message, o Options) error { return m.AxonUnmarshal(src, o) }

// FingerprintMismatch returns the FAILED_PRECONDITION status of a message
// whose schema fingerprint at the sender (the peer that sent its
// fingerprint) differs from the one at the receiver (the side checking it).
func FingerprintMismatch(msg string, sender, receiver uint64) *status.Error {
	return status.Errorf(status.FailedPrecondition,
		"message %s: schema fingerprint mismatch: sender 0x%016x, receiver 0x%016x (both sides must be generated from the same .proto, or use the proto codec)",
		msg, sender, receiver)
}

// DecodeError describes malformed input.
type DecodeError struct {
	// Type is the top-level message being decoded; In is the innermost
	// message whose decoding failed, when it differs.
	Type, In string
	// Offset is where in the input the problem was found; Size is the
	// input's length.
	Offset, Size int
	// Reason says what is wrong.
	Reason string
}

func (e *DecodeError) Error() string {
	in := ""
	if e.In != "" && e.In != e.Type {
		in = " in " + e.In
	}
	return fmt.Sprintf("codec.binary: decode %s%s: at byte %d of %d: %s", e.Type, in, e.Offset, e.Size, e.Reason)
}

// Decoder reads a body. Its methods check every length against the bytes
// left. The first error is kept and later reads return zero values, so
// generated code checks the error once per message (Leave).
//
// It reads at an offset into the input rather than re-slicing it, and
// fills an Arena chunk up to an offset rather than appending to it, so that
// most reads store an integer, not a pointer.
type Decoder struct {
	b       []byte // the whole input
	i       int    // offset of the first unread byte
	depth   int    // nesting levels left
	strings Strings
	chunk   []byte // Arena: the chunk strings are copied to (len == cap)
	used    int    // bytes of chunk in use
	err     *DecodeError
}

// Begin starts decoding src, the encoding of a top-level message, with the
// options o. Generated AxonUnmarshal methods call it on a Decoder of their
// own, which then lives on the stack: a Decoder is used by one goroutine
// for one message and is not reused.
func (d *Decoder) Begin(src []byte, o Options) {
	d.b, d.i, d.depth, d.strings = src, 0, o.MaxDepth, o.Strings
	if d.depth <= 0 {
		d.depth = DefaultMaxDepth
	}
}

// End finishes decoding the top-level message name, whose body must have
// used the whole input, and returns the first error, a *DecodeError, or
// nil.
func (d *Decoder) End(name string) error {
	if d.err == nil && d.i != len(d.b) {
		d.fail(fmt.Sprintf("%d bytes after the end of the message", d.left()))
	}
	if d.err == nil {
		return nil
	}
	d.err.Type = name
	return d.err
}

// left returns the number of unread bytes.
func (d *Decoder) left() int { return len(d.b) - d.i }

// fail records reason at the current offset and stops decoding.
func (d *Decoder) fail(reason string) { d.failAt(d.i, reason) }

// failAt records reason at offset and stops decoding: every later read
// finds no bytes left.
func (d *Decoder) failAt(offset int, reason string) {
	if d.err == nil {
		d.err = &DecodeError{Offset: offset, Size: len(d.b), Reason: reason}
	}
	d.i = len(d.b)
}

// Invalid records that the input is malformed for reason.
func (d *Decoder) Invalid(reason string) { d.fail(reason) }

// Enter starts decoding a nested message; it fails when that would exceed
// the nesting limit. Every Enter is paired with a Leave.
func (d *Decoder) Enter() bool {
	d.depth--
	if d.depth < 0 {
		d.fail("messages nested deeper than the limit")
		return false
	}
	return d.err == nil
}

// Leave ends a message started by Enter. name is the message's full name,
// recorded in the error when the failure happened inside it.
func (d *Decoder) Leave(name string) error {
	d.depth++
	if d.err == nil {
		return nil
	}
	if d.err.In == "" {
		d.err.In = name
	}
	return d.err
}

// Byte reads one byte (a presence bitmap byte, a bool).
func (d *Decoder) Byte() byte {
	if i := d.i; i < len(d.b) {
		d.i = i + 1
		return d.b[i]
	}
	d.fail("truncated")
	return 0
}

// Bool reads a byte that must be 0 or 1.
func (d *Decoder) Bool() bool {
	if i := d.i; i < len(d.b) && d.b[i] > 1 {
		d.fail(fmt.Sprintf("bool byte %#x is neither 0 nor 1", d.b[i]))
		return false
	}
	return d.Byte() == 1
}

// Uvarint reads a varint of at most 10 bytes.
func (d *Decoder) Uvarint() uint64 {
	if i := d.i; i < len(d.b) {
		if c := d.b[i]; c < 0x80 {
			d.i = i + 1
			return uint64(c)
		}
	}
	return d.uvarintSlow()
}

func (d *Decoder) uvarintSlow() uint64 {
	i := d.i
	if len(d.b)-i < 10 {
		return d.uvarintShort()
	}
	// Enough bytes for any varint, so no length check per byte; unrolled,
	// since a loop costs more than the bytes for the 2- to 5-byte varints
	// that get here most. s[0] has its high bit set (Uvarint took the
	// one-byte case).
	s := d.b[i : i+10 : i+10]
	v := uint64(s[0]) - 0x80
	c := uint64(s[1])
	if c < 0x80 {
		d.i = i + 2
		return v | c<<7
	}
	v |= (c - 0x80) << 7
	c = uint64(s[2])
	if c < 0x80 {
		d.i = i + 3
		return v | c<<14
	}
	v |= (c - 0x80) << 14
	c = uint64(s[3])
	if c < 0x80 {
		d.i = i + 4
		return v | c<<21
	}
	v |= (c - 0x80) << 21
	c = uint64(s[4])
	if c < 0x80 {
		d.i = i + 5
		return v | c<<28
	}
	v |= (c - 0x80) << 28
	for k := 5; k < 9; k++ {
		c = uint64(s[k])
		if c < 0x80 {
			d.i = i + k + 1
			return v | c<<(7*k)
		}
		v |= (c - 0x80) << (7 * k)
	}
	if c = uint64(s[9]); c <= 1 {
		d.i = i + 10
		return v | c<<63
	}
	d.fail("varint overflows 64 bits")
	return 0
}

// uvarintShort reads a varint near the end of the input, checking the
// length at every byte.
func (d *Decoder) uvarintShort() uint64 {
	v, n := binary.Uvarint(d.b[d.i:])
	if n <= 0 {
		if n == 0 {
			d.fail("truncated varint")
		} else {
			d.fail("varint overflows 64 bits")
		}
		return 0
	}
	d.i += n
	return v
}

// Uvarint32 reads a varint that must fit 32 bits.
func (d *Decoder) Uvarint32() uint32 {
	if i := d.i; i < len(d.b) {
		if c := d.b[i]; c < 0x80 {
			d.i = i + 1
			return uint32(c)
		}
	}
	return d.uvarint32Slow()
}

func (d *Decoder) uvarint32Slow() uint32 {
	v := d.uvarintSlow()
	if v > math.MaxUint32 {
		d.fail("varint overflows 32 bits")
		return 0
	}
	return uint32(v)
}

// Zigzag64 reads a zigzag-encoded varint.
func (d *Decoder) Zigzag64() int64 {
	v := d.Uvarint()
	return int64(v>>1) ^ -int64(v&1)
}

// Zigzag32 reads a zigzag-encoded varint that must fit 32 bits.
func (d *Decoder) Zigzag32() int32 {
	v := d.Uvarint32()
	return int32(v>>1) ^ -int32(v&1)
}

// Fixed32 reads 4 bytes, little endian.
func (d *Decoder) Fixed32() uint32 {
	i := d.i
	if len(d.b)-i < 4 {
		d.fail("truncated fixed32")
		return 0
	}
	d.i = i + 4
	return binary.LittleEndian.Uint32(d.b[i:])
}

// Fixed64 reads 8 bytes, little endian.
func (d *Decoder) Fixed64() uint64 {
	i := d.i
	if len(d.b)-i < 8 {
		d.fail("truncated fixed64")
		return 0
	}
	d.i = i + 8
	return binary.LittleEndian.Uint64(d.b[i:])
}

// Float reads a 4-byte IEEE 754 float.
func (d *Decoder) Float() float32 { return math.Float32frombits(d.Fixed32()) }

// Double reads an 8-byte IEEE 754 float.
func (d *Decoder) Double() float64 { return math.Float64frombits(d.Fixed64()) }

// Count reads the element count of a repeated or map field whose elements
// take at least minSize bytes each, failing before any allocation when the
// bytes left cannot hold that many.
func (d *Decoder) Count(minSize int) int {
	n := d.Uvarint()
	if d.err != nil {
		return 0
	}
	if left := d.left(); n > uint64(left/minSize) {
		d.fail(fmt.Sprintf("count %d exceeds what the %d bytes left can hold", n, left))
		return 0
	}
	return int(n)
}

// OneofCase reads the case of a set oneof: 1 for its first member (in field
// number order) to n for its last.
func (d *Decoder) OneofCase(name string, n int) int {
	c := d.Uvarint()
	if d.err == nil && (c == 0 || c > uint64(n)) {
		d.fail(fmt.Sprintf("oneof %s: case %d is not one of 1..%d", name, c, n))
		return 0
	}
	return int(c)
}

// raw reads a length-prefixed byte string. p aliases the input with its
// capacity capped; start is the offset of its first byte.
func (d *Decoder) raw(what string) (p []byte, start int) {
	n := d.Uvarint()
	start = d.i
	if left := d.left(); n > uint64(left) {
		d.fail(fmt.Sprintf("%s length %d exceeds the %d bytes left", what, n, left))
		return nil, start
	}
	d.i = start + int(n)
	return d.b[start:d.i:d.i], start
}

// own returns p, read at offset start, with the ownership d.strings asks
// for.
func (d *Decoder) own(p []byte, start int) []byte {
	switch d.strings {
	case Alias:
		return p
	case Copy:
		return clone(p)
	}
	if len(p) > len(d.chunk)-d.used {
		// Strings are at most what is left of the input: never allocate
		// more than that.
		size := min(max(2*len(d.chunk), firstChunk), len(d.b)-start)
		if len(p) > size/2 {
			return clone(p) // its own allocation
		}
		d.chunk, d.used = make([]byte, size), 0
	}
	i := d.used
	d.used += copy(d.chunk[i:], p)
	return d.chunk[i:d.used:d.used]
}

// clone returns a copy of p with len == cap.
func clone(p []byte) []byte {
	c := make([]byte, len(p))
	copy(c, p)
	return c
}

// firstChunk is the size of the first Arena chunk.
const firstChunk = 128

// Str reads a string, which must be valid UTF-8.
func (d *Decoder) Str() string {
	p, start := d.raw("string")
	if len(p) == 0 {
		return ""
	}
	if !utf8.Valid(p) {
		d.failAt(start, "string is not valid UTF-8")
		return ""
	}
	if d.strings == Copy {
		return string(p)
	}
	p = d.own(p, start)
	return unsafe.String(&p[0], len(p))
}

// Bytes reads a bytes field; it is never nil, so that an explicitly present
// empty value stays present.
func (d *Decoder) Bytes() []byte {
	p, start := d.raw("bytes")
	if d.err != nil {
		return nil
	}
	if len(p) == 0 {
		return []byte{}
	}
	return d.own(p, start)
}

// Timestamp reads a timestamp written by AppendTimestamp.
func (d *Decoder) Timestamp() *timestamppb.Timestamp {
	s := d.Zigzag64()
	n := d.Zigzag32()
	return &timestamppb.Timestamp{Seconds: s, Nanos: n}
}

// Duration reads a duration written by AppendDuration.
func (d *Decoder) Duration() *durationpb.Duration {
	s := d.Zigzag64()
	n := d.Zigzag32()
	return &durationpb.Duration{Seconds: s, Nanos: n}
}

// Proto reads a length-prefixed Protocol Buffers message into m, within the
// nesting limit left.
func (d *Decoder) Proto(m proto.Message) {
	p, start := d.raw("proto message")
	if d.err != nil {
		return
	}
	if d.depth <= 0 {
		d.fail("messages nested deeper than the limit")
		return
	}
	if err := (proto.UnmarshalOptions{RecursionLimit: d.depth}).Unmarshal(p, m); err != nil {
		d.failAt(start, err.Error())
	}
}
