package binary_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/kernel"
	binary "github.com/axonrpc/axon/plugins/codec-binary"
	"github.com/axonrpc/axon/plugins/codec-binary/internal/testpb"
	"github.com/axonrpc/axon/plugins/codec-binary/wire"
)

// fuzzTypes are the messages FuzzDecode decodes into; the first byte of an
// input picks one, the rest is the encoding.
var fuzzTypes = []func() wire.Message{
	func() wire.Message { return new(testpb.All) },
	func() wire.Message { return new(testpb.Node) },
	func() wire.Message { return new(testpb.OrderEvent) },
	func() wire.Message { return new(testpb.Scalars) },
}

const (
	fuzzAll = iota
	fuzzNode
	fuzzOrder
	fuzzScalars
)

// allocBound is the most a decode may allocate for an input of n bytes:
// counts and lengths are checked against the bytes left, so allocation is
// linear in the input; the factor covers the largest Go struct per byte of
// its smallest encoding (an empty element of a repeated message).
func allocBound(n int) uint64 { return 1<<20 + 512*uint64(n) }

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}

func allocated() uint64 {
	metrics.Read(allocSample)
	return allocSample[0].Value.Uint64()
}

// FuzzDecode feeds arbitrary encodings to the decoder: it must never panic,
// allocate more than allocBound, or fail without a *wire.DecodeError; what
// it accepts must re-encode to a message that decodes equal.
//
//	go test ./plugins/codec-binary -run '^$' -fuzz FuzzDecode -fuzztime 30s
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.in)
	}
	c := binary.New(kernel.Limits{})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		newMsg := fuzzTypes[int(in[0])%len(fuzzTypes)]
		m := newMsg()
		src := in[1:]
		before := allocated()
		err := c.Unmarshal(src, m)
		if used := allocated() - before; used > allocBound(len(src)) {
			t.Fatalf("decoding %d bytes allocated %d bytes", len(src), used)
		}
		if err != nil {
			var de *wire.DecodeError
			if !errors.As(err, &de) || !strings.HasPrefix(err.Error(), "codec.binary: decode axon.test.binary.v1.") {
				t.Fatalf("unclear error %T: %v", err, err)
			}
			return
		}
		again := newMsg()
		if err := c.Unmarshal(wire.Marshal(nil, m), again); err != nil {
			t.Fatalf("re-encoding of an accepted input does not decode: %v", err)
		}
		if !proto.Equal(m.(proto.Message), again.(proto.Message)) {
			t.Fatalf("re-encoding changed the message:\n%v\n%v", m, again)
		}
	})
}

type fuzzSeed struct {
	name string
	in   []byte
}

// body returns the encoding of m behind the byte that selects its type.
func body(typ byte, m wire.Message) []byte { return append([]byte{typ}, m.AxonAppend(nil)...) }

// fuzzSeeds are the committed seed corpus (testdata/fuzz/FuzzDecode; run
// go test -run TestWriteFuzzCorpus -write-corpus to rewrite it).
func fuzzSeeds() []fuzzSeed {
	seeds := []fuzzSeed{
		{"valid_all", body(fuzzAll, golden[3].msg)},
		{"valid_full", body(fuzzAll, full())},
		{"valid_order", body(fuzzOrder, testpb.Order())},
		{"valid_scalars", body(fuzzScalars, golden[2].msg)},
		{"valid_node", body(fuzzNode, golden[4].msg)},
		{"varint_11_bytes", []byte{fuzzScalars, 0x08, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"varint_10th_byte_over_1", []byte{fuzzScalars, 0x08, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}},
		{"varint_over_32_bits", []byte{fuzzScalars, 0x04, 0x00, 0xff, 0xff, 0xff, 0xff, 0x1f}},
		{"varint_truncated", []byte{fuzzScalars, 0x04, 0x00, 0x80}},
		{"length_over_input", []byte{fuzzScalars, 0x00, 0x20, 0x10, 'a', 'b'}},
		{"length_negative", []byte{fuzzScalars, 0x00, 0x40, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'}},
		{"length_max_int64", []byte{fuzzScalars, 0x00, 0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 'a'}},
		{"count_2_pow_32", []byte{fuzzAll, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3}},
		{"count_of_empty_messages", []byte{fuzzAll, 0, 0, 0, 0, 0, 0, 0, 0x08, 0xff, 0xff, 0xff, 0x07, 0, 0, 0}},
		{"map_count_over_input", []byte{fuzzOrder, 0x10, 0xff, 0xff, 0x03, 'k', 'v'}},
		{"invalid_utf8", []byte{fuzzScalars, 0x00, 0x20, 0x02, 0xc3, 0x28}},
		{"bool_byte_2", []byte{fuzzAll, 0, 0x20, 0, 0, 0, 0, 0, 0, 0x02}},
		{"oneof_case_0", []byte{fuzzAll, 0, 0, 0, 0, 0, 0, 0x04, 0, 0x00}},
		{"oneof_case_200", []byte{fuzzAll, 0, 0, 0, 0, 0, 0, 0x04, 0, 0xc8, 0x01}},
		{"bits_past_last_field", []byte{fuzzNode, 0xfc}},
		{"proto_field_garbage", []byte{fuzzAll, 0, 0, 0, 0, 0, 0, 0x40, 0, 0x03, 0x0a, 0x05, 0x01}},
		{"deep_101", append([]byte{fuzzNode}, nested(101)...)},
		{"deep_5000", append([]byte{fuzzNode}, nested(5000)...)},
		{"deep_all_children", append([]byte{fuzzAll}, strings.Repeat("\x00\x00\x00\x00\x00\x00\x00\x02", 200)...)},
	}
	valid := body(fuzzAll, golden[3].msg)
	for i := 1; i < len(valid); i++ {
		seeds = append(seeds, fuzzSeed{fmt.Sprintf("truncated_all_%03d", i), valid[:i]})
	}
	return seeds
}

var writeCorpus = flag.Bool("write-corpus", false, "rewrite testdata/fuzz/FuzzDecode from fuzzSeeds")

func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range fuzzSeeds() {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.in)
		if err := os.WriteFile(filepath.Join(dir, s.name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
