package binary_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
	binary "github.com/axonrpc/axon/plugins/codec-binary"
	"github.com/axonrpc/axon/plugins/codec-binary/internal/testpb"
	"github.com/axonrpc/axon/plugins/codec-binary/wire"
)

// fp prefixes body with m's fingerprint.
func fp(m wire.Message, body ...byte) []byte {
	return append(wire.AppendFixed64(nil, m.AxonFingerprint()), body...)
}

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
		{"empty input", sc, nil, "at byte 0 of 0: 0 bytes are too few for the 8-byte schema fingerprint"},
		{"short fingerprint", sc, []byte{1, 2, 3}, "3 bytes are too few"},
		{"no body", sc, fp(sc), "at byte 8 of 8: truncated"},
		{"truncated varint", sc, fp(sc, 0x04, 0x00, 0x80), "truncated varint"},
		{"varint of 11 bytes", sc, fp(sc, 0x08, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "varint overflows 64 bits"},
		{"varint over 32 bits", sc, fp(sc, 0x04, 0x00, 0xff, 0xff, 0xff, 0xff, 0x1f), "varint overflows 32 bits"},
		{"string longer than the input", sc, fp(sc, 0x00, 0x20, 0x10, 'a', 'b'), "string length 16 exceeds the 2 bytes left"},
		{"negative length", sc, fp(sc, 0x00, 0x40, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'), "bytes length 18446744073709551615 exceeds the 1 bytes left"},
		{"count larger than the input", all, fp(all, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3), "count 4294967296 exceeds what the 3 bytes left can hold"},
		{"fixed-width count", all, fp(all, 0, 0, 0, 0x08, 0, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8), "count 2 exceeds what the 8 bytes left can hold"},
		{"truncated fixed64", sc, fp(sc, 0x01, 0x00, 1, 2, 3), "truncated fixed64"},
		{"invalid UTF-8", sc, fp(sc, 0x00, 0x20, 0x02, 0xc3, 0x28), "at byte 11 of 13: string is not valid UTF-8"},
		{"bool byte 2", all, fp(all, 0, 0x20, 0, 0, 0, 0, 0, 0, 0x02), "bool byte 0x2 is neither 0 nor 1"},
		{"byte after the message", sc, fp(sc, 0x00, 0x00, 0x01), "at byte 10 of 11: 1 bytes after the end of the message"},
		{"presence bit past the last field", node, fp(node, 0x04), "presence bits for fields that axon.test.binary.v1.Node does not have"},
		{"oneof case 0", all, fp(all, 0, 0, 0, 0, 0, 0, 0x04, 0, 0x00), "oneof choice: case 0 is not one of 1..8"},
		{"oneof case 9", all, fp(all, 0, 0, 0, 0, 0, 0, 0x04, 0, 0x09), "oneof choice: case 9 is not one of 1..8"},
		{"trailing bytes", node, fp(node, 0x00, 0x00, 0x00), "2 bytes after the end of the message"},
		{"too deep", node, fp(node, nested(101)...), "messages nested deeper than the limit"},
		{"deep and truncated", node, fp(node, nested(101)[:50]...), "truncated"},
		{"nested message fails", all, fp(all, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00), "in axon.test.binary.v1.Scalars: at byte 18 of 18: truncated"},
		{"proto-encoded field", all, fp(all, 0, 0, 0, 0, 0, 0, 0x40, 0, 0x03, 0x0a, 0x05, 0x01), "at byte 17 of 20: proto"},
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

func TestFingerprintMismatch(t *testing.T) {
	c := binary.New(kernel.Limits{})
	b, _ := c.Marshal(nil, &testpb.Scalars{FInt32: 1})
	err := c.Unmarshal(b, new(testpb.Node))
	if status.CodeOf(err) != status.FailedPrecondition {
		t.Fatalf("got %v, want FAILED_PRECONDITION", err)
	}
	want := fmt.Sprintf("message axon.test.binary.v1.Node: schema fingerprint mismatch: sender 0x%016x, receiver 0x%016x",
		new(testpb.Scalars).AxonFingerprint(), new(testpb.Node).AxonFingerprint())
	if !strings.Contains(status.FromError(err).Message(), want) {
		t.Fatalf("got  %q\nwant %q", status.FromError(err).Message(), want)
	}
}
