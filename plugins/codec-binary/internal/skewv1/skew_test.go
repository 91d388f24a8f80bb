package skewv1_test

import (
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/kernel"
	bincodec "github.com/axonrpc/axon/plugins/codec-binary"
	"github.com/axonrpc/axon/plugins/codec-binary/internal/skewv1"
	"github.com/axonrpc/axon/plugins/codec-binary/wire"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// V1Event is the version-1 message whose committed encodings and schema
// the skewv2 tests send to version 2 (the two versions share a name, so
// they cannot be linked into one test binary).
var V1Event = &skewv1.Event{Id: 42, Name: "from v1"}

func TestV1Golden(t *testing.T) {
	pb, err := proto.Marshal(V1Event)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"event_v1.binary.hex": wire.Marshal(nil, V1Event),
		"event_v1.proto.hex":  pb,
		// What a version-1 client of Events/Put (Event in, Event out)
		// sends as its schema.
		"event_v1.schema.txt": []byte(bincodec.New(kernel.Limits{}).Schema(V1Event, V1Event)),
	} {
		got := string(b)
		if strings.HasSuffix(name, ".hex") {
			got = hex.EncodeToString(b)
		}
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, []byte(got+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if got != strings.TrimSpace(string(want)) {
			t.Errorf("%s: changed:\n got %s\nwant %s", name, got, want)
		}
	}
}
