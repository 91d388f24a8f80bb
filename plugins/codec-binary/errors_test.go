package binary_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/axonrpc/axon/kernel"
	binary "github.com/axonrpc/axon/plugins/codec-binary"
	"github.com/axonrpc/axon/plugins/codec-binary/internal/testpb"
	"github.com/axonrpc/axon/plugins/codec-binary/wire"
)

// in returns its arguments, the bytes of an input.
func in(b ...byte) []byte { return b }

// nested returns the body of n Nodes, each the next of the one before.
func nested(n int) []byte {
	var b []byte
	for range n - 1 {
		b = append(b, 0x01) // bitmap: next is set
	}
	return append(b, 0x00)
}

func TestDecodeErrors(t *testing.T) {
	sc, node, all := new(testpb.Scalars), new(testpb.Node), new(testpb.All)
	for _, tc := range []struct {
		name string
		msg  wire.Message
		in   []byte
		want string
	}{
		{"empty input", sc, nil, "at byte 0 of 0: truncated"},
		{"truncated bitmap", sc, in(0x01), "at byte 1 of 1: truncated"},
		{"truncated varint", sc, in(0x04, 0x00, 0x80), "truncated varint"},
		{"varint of 11 bytes", sc, in(0x08, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "varint overflows 64 bits"},
		{"varint over 32 bits", sc, in(0x04, 0x00, 0xff, 0xff, 0xff, 0xff, 0x1f), "varint overflows 32 bits"},
		{"string longer than the input", sc, in(0x00, 0x20, 0x10, 'a', 'b'), "string length 16 exceeds the 2 bytes left"},
		{"negative length", sc, in(0x00, 0x40, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'), "bytes length 18446744073709551615 exceeds the 1 bytes left"},
		{"count larger than the input", all, in(0, 0, 0x10, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3), "count 4294967296 exceeds what the 3 bytes left can hold"},
		{"fixed-width count", all, in(0, 0, 0, 0x08, 0, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8), "count 2 exceeds what the 8 bytes left can hold"},
		{"truncated fixed64", sc, in(0x01, 0x00, 1, 2, 3), "truncated fixed64"},
		{"invalid UTF-8", sc, in(0x00, 0x20, 0x02, 0xc3, 0x28), "at byte 3 of 5: string is not valid UTF-8"},
		{"bool byte 2", all, in(0, 0x20, 0, 0, 0, 0, 0, 0, 0x02), "bool byte 0x2 is neither 0 nor 1"},
		{"byte after the message", sc, in(0x00, 0x00, 0x01), "at byte 2 of 3: 1 bytes after the end of the message"},
		{"presence bit past the last field", node, in(0x04), "presence bits for fields that axon.test.binary.v1.Node does not have"},
		{"oneof case 0", all, in(0, 0, 0, 0, 0, 0, 0x04, 0, 0x00), "oneof choice: case 0 is not one of 1..8"},
		{"oneof case 9", all, in(0, 0, 0, 0, 0, 0, 0x04, 0, 0x09), "oneof choice: case 9 is not one of 1..8"},
		{"trailing bytes", node, in(0x00, 0x00, 0x00), "2 bytes after the end of the message"},
		{"too deep", node, nested(101), "messages nested deeper than the limit"},
		{"deep and truncated", node, nested(101)[:50], "truncated"},
		{"nested message fails", all, in(0x01, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00), "in axon.test.binary.v1.Scalars: at byte 10 of 10: truncated"},
		{"proto-encoded field", all, in(0, 0, 0, 0, 0, 0, 0x40, 0, 0x03, 0x0a, 0x05, 0x01), "at byte 9 of 12: proto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wire.Unmarshal(tc.in, tc.msg, wire.Options{})
			var de *wire.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %v (%T), want a *wire.DecodeError", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "codec.binary: decode axon.test.binary.v1.") {
				t.Fatalf("got  %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestTruncatedEverywhere cuts a message with every field kind at every
// byte: each prefix is an error, never a panic or a success.
func TestTruncatedEverywhere(t *testing.T) {
	b := wire.Marshal(nil, full())
	c := binary.New(kernel.Limits{})
	for i := range len(b) {
		if err := c.Unmarshal(b[:i], new(testpb.All)); err == nil {
			t.Fatalf("a prefix of %d of %d bytes decoded without error", i, len(b))
		}
	}
}
