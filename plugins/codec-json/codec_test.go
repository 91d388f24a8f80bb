package json_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	jsoncodec "github.com/axonrpc/axon/plugins/codec-json"
)

func TestRoundTrip(t *testing.T) {
	c := jsoncodec.New(kernel.Limits{})
	if c.Name() != "json" {
		t.Fatalf("name %q", c.Name())
	}
	in := &echopb.Order{Id: 1, Customer: &echopb.Customer{Name: "Ada"}, Items: []*echopb.Item{{Sku: 9, Quantity: 1, Price: -5}}, Tags: map[string]string{"k": "v"}}
	b, err := c.Marshal([]byte("prefix"), in)
	if err != nil || !strings.HasPrefix(string(b), "prefix{") {
		t.Fatalf("marshal: %q, %v", b, err)
	}
	out := new(echopb.Order)
	if err := c.Unmarshal(b[len("prefix"):], out); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, out) {
		t.Fatalf("got %v", out)
	}
}

func TestUnmarshal(t *testing.T) {
	c := jsoncodec.New(kernel.Limits{MaxDecodeDepth: 10})
	for _, tc := range []struct {
		name, in string
		msg      proto.Message
		want     string // error substring; "" for success
	}{
		{"unknown fields are ignored", `{"text": "hi", "added_later": 1}`, new(echopb.SayRequest), ""},
		{"malformed", `{"text": `, new(echopb.SayRequest), "codec.json: proto:"},
		{"wrong type", `{"text": 5}`, new(echopb.SayRequest), "codec.json: proto:"},
		{"within the depth limit", strings.Repeat("[", 4) + strings.Repeat("]", 4), new(structpb.Value), ""},
		{"deeper than the limit", strings.Repeat("[", 50) + strings.Repeat("]", 50), new(structpb.Value), "exceeded max recursion depth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Unmarshal([]byte(tc.in), tc.msg)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNotAProtoMessage(t *testing.T) {
	c := jsoncodec.New(kernel.Limits{})
	if _, err := c.Marshal(nil, struct{}{}); err == nil || !strings.Contains(err.Error(), "codec.json: struct {} is not a proto.Message") {
		t.Fatalf("marshal: %v", err)
	}
	if err := c.Unmarshal([]byte("{}"), 5); err == nil || !strings.Contains(err.Error(), "codec.json: int is not a proto.Message") {
		t.Fatalf("unmarshal: %v", err)
	}
}
