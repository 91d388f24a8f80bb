package proto_test

import (
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
)

// nestedList returns a Value holding lists nested n deep.
func nestedList(n int) *structpb.Value {
	v := structpb.NewNullValue()
	for range n {
		v = structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{v}})
	}
	return v
}

func TestDepthLimitFromLimits(t *testing.T) {
	inst, err := protocodec.Factory.Build(kernel.BuildContext{Logger: slog.New(slog.DiscardHandler), Limits: kernel.Limits{MaxDecodeDepth: 20}}, config.Raw{})
	if err != nil {
		t.Fatal(err)
	}
	c := inst.(kernel.Codec)
	for _, tc := range []struct {
		lists int
		ok    bool
	}{{9, true}, {50, false}} { // each list is two levels: ListValue and Value
		b, err := proto.Marshal(nestedList(tc.lists))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Unmarshal(b, new(structpb.Value))
		if (err == nil) != tc.ok || (!tc.ok && !strings.Contains(err.Error(), "exceeded maximum recursion depth")) {
			t.Fatalf("%d lists: got %v", tc.lists, err)
		}
	}
}
