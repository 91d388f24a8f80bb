package wire_test

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/axonrpc/axon/plugins/codec-binary/wire"
)

// decodeOne runs read on a Decoder over in and returns its value and the
// error End reports, which includes bytes left unread.
func decodeOne[T any](in []byte, read func(*wire.Decoder) T) (T, error) {
	var d wire.Decoder
	d.Begin(in, wire.Options{})
	v := read(&d)
	return v, d.End("test")
}

// TestUvarint checks the decoder's varints against encoding/binary for
// every length from 1 to 10 bytes, both near the end of the input (where
// every byte's length is checked) and with 10 or more bytes left (where it
// is not), and the malformed ones: truncated, 11 bytes, and a 10th byte
// over 1.
func TestUvarint(t *testing.T) {
	var values []uint64
	for bits := range 65 {
		v := uint64(1)<<bits - 1 // the largest of each length, and 0
		values = append(values, v, v+1, v/3)
	}
	values = append(values, math.MaxUint64, 4_000_000_000, 300)
	tail := []byte(strings.Repeat("\x00", 12))
	for _, v := range values {
		enc := binary.AppendUvarint(nil, v)
		for _, padded := range []bool{false, true} {
			in, zeros := enc, 0
			if padded {
				// The tail is zero varints of one byte each, read after
				// the value so that End finds the input used up.
				in, zeros = append(append([]byte(nil), enc...), tail...), len(tail)
			}
			got, err := decodeOne(in, func(d *wire.Decoder) uint64 {
				v := d.Uvarint()
				for range zeros {
					if d.Uvarint() != 0 {
						t.Errorf("padding after % x decoded as non-zero", enc)
					}
				}
				return v
			})
			if err != nil || got != v {
				t.Errorf("Uvarint(% x, padded %v) = %d, %v; want %d", enc, padded, got, err, v)
			}
		}
	}

	for _, tc := range []struct {
		name, want string
		in         []byte
	}{
		{"empty", "truncated varint", nil},
		{"truncated", "truncated varint", []byte{0x80, 0x80}},
		{"11 bytes", "overflows 64 bits", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"10th byte over 1", "overflows 64 bits", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}},
		{"10th byte over 1, padded", "overflows 64 bits", append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, tail...)},
		{"over 32 bits", "overflows 32 bits", []byte{0xff, 0xff, 0xff, 0xff, 0x1f}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read := func(d *wire.Decoder) uint64 { return d.Uvarint() }
			if strings.Contains(tc.want, "32") {
				read = func(d *wire.Decoder) uint64 { return uint64(d.Uvarint32()) }
			}
			got, err := decodeOne(tc.in, read)
			if err == nil || !strings.Contains(err.Error(), tc.want) || got != 0 {
				t.Fatalf("got %d, %v; want 0 and an error containing %q", got, err, tc.want)
			}
		})
	}
}
