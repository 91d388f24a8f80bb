package binary_test

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	binary "github.com/axonrpc/axon/plugins/codec-binary"
	"github.com/axonrpc/axon/plugins/codec-binary/internal/testpb"
	"github.com/axonrpc/axon/plugins/codec-binary/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// golden are fixed messages whose encodings are committed: a change to the
// encoding shows up as a diff (fingerprints are not part of the encoding;
// TestGoldenSchema pins them). Maps hold at most one
// entry, since map order is not deterministic.
var golden = []struct {
	name string
	msg  wire.Message
}{
	{"say_request", &echopb.SayRequest{Text: "hi"}},
	{"empty", &testpb.Empty{}},
	{"scalars", &testpb.Scalars{
		FDouble: 1.5, FFloat: -2, FInt32: -1, FInt64: 300, FUint32: 127, FUint64: 128,
		FSint32: -1, FSint64: -64, FFixed32: 1, FFixed64: 2, FSfixed32: -3, FSfixed64: -4,
		FBool: true, FString: "é", FBytes: []byte{0xff}, FEnum: testpb.Color_COLOR_GREEN,
	}},
	{"all", &testpb.All{
		OInt32:        proto.Int32(0),
		OString:       proto.String(""),
		RSint32:       []int32{-1, 0, 1},
		RString:       []string{"a", ""},
		RMessage:      []*testpb.Scalars{{FInt32: 7}},
		MStringString: map[string]string{"k": "v"},
		Choice:        &testpb.All_CString{CString: "c"},
		Timestamp:     &timestamppb.Timestamp{Seconds: 1_700_000_000, Nanos: 5},
		Duration:      &durationpb.Duration{Seconds: -1, Nanos: -2},
		Child:         &testpb.All{Empty: &testpb.Empty{}},
	}},
	{"node", &testpb.Node{Value: 1, Next: &testpb.Node{Value: 2, Next: &testpb.Node{}}}},
	{"line_item", &testpb.LineItem{Sku: 4_000_000_000, Quantity: 3, Price: 9.99}},
}

func TestGolden(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			got := wire.Marshal(nil, g.msg)
			path := filepath.Join("testdata", "golden", g.name+".hex")
			if *update {
				if err := os.WriteFile(path, []byte(hex.EncodeToString(got)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if h := hex.EncodeToString(got); h != strings.TrimSpace(string(want)) {
				t.Fatalf("encoding changed:\n got %s\nwant %s", h, strings.TrimSpace(string(want)))
			}
			// The committed bytes decode to the message.
			b, _ := hex.DecodeString(strings.TrimSpace(string(want)))
			out := g.msg.(proto.Message).ProtoReflect().Type().New().Interface().(wire.Message)
			if err := wire.Unmarshal(b, out, wire.Options{}); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(out.(proto.Message), g.msg.(proto.Message)) {
				t.Fatalf("golden bytes decode to %v", out)
			}
		})
	}
}

// TestGoldenLayout spells out one encoding byte by byte, as the README
// describes it.
func TestGoldenLayout(t *testing.T) {
	m := &testpb.LineItem{Sku: 300, Price: 0.5} // quantity 0: not sent
	got := hex.EncodeToString(wire.Marshal(nil, m))
	want := strings.Join([]string{
		"05",               // presence bitmap: fields 1 (sku) and 3 (price)
		"ac02",             // sku 300, varint
		"000000000000e03f", // price 0.5, 8 bytes little endian
	}, "")
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestGoldenSchema pins the golden messages' schema fingerprints, in the
// form Schema sends them (testdata/golden/schemas.txt: one line per
// message, its name and Schema(msg, msg)): a change to the fingerprint
// algorithm or to a golden message's schema shows up as a diff.
func TestGoldenSchema(t *testing.T) {
	c := binary.New(kernel.Limits{})
	var b strings.Builder
	for _, g := range golden {
		fmt.Fprintf(&b, "%s %s\n", g.name, c.Schema(g.msg, g.msg))
	}
	path := filepath.Join("testdata", "golden", "schemas.txt")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenSchema -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Fatalf("schemas changed:\n got\n%s\nwant\n%s", b.String(), want)
	}
}
