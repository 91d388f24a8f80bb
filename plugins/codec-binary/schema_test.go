package binary_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
	binary "github.com/axonrpc/axon/plugins/codec-binary"
	"github.com/axonrpc/axon/plugins/codec-binary/internal/testpb"
)

func TestSchema(t *testing.T) {
	c := binary.New(kernel.Limits{})
	fp := func(v interface{ AxonFingerprint() uint64 }) string { return fmt.Sprintf("%016x", v.AxonFingerprint()) }
	for _, tc := range []struct {
		name      string
		req, resp any
		want      string
	}{
		{"echo", new(echopb.SayRequest), new(echopb.SayResponse), fp(new(echopb.SayRequest)) + "." + fp(new(echopb.SayResponse))},
		{"nil pointers", (*echopb.SayRequest)(nil), (*echopb.SayResponse)(nil), fp(new(echopb.SayRequest)) + "." + fp(new(echopb.SayResponse))},
		{"same type", new(testpb.Node), new(testpb.Node), fp(new(testpb.Node)) + "." + fp(new(testpb.Node))},
		{"no binary methods", wrapperspb.String("x"), nil, "0000000000000000.0000000000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := c.Schema(tc.req, tc.resp)
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if err := c.CompareSchema(tc.req, tc.resp, got); err != nil {
				t.Fatalf("CompareSchema of its own Schema: %v", err)
			}
		})
	}
}

// TestSchemaAllocatesOnce checks that a client's per-call Schema allocates
// only the first time it sees a pair of types.
func TestSchemaAllocatesOnce(t *testing.T) {
	c := binary.New(kernel.Limits{})
	req, resp := new(echopb.SayRequest), new(echopb.SayResponse)
	c.Schema(req, resp)
	if n := testing.AllocsPerRun(100, func() { c.Schema(req, resp) }); n != 0 {
		t.Fatalf("Schema allocates %.0f times per call", n)
	}
}

// TestSchemaConcurrent fills the cache from many goroutines (run it with
// -race).
func TestSchemaConcurrent(t *testing.T) {
	c := binary.New(kernel.Limits{})
	types := []any{new(echopb.SayRequest), new(echopb.SayResponse), new(testpb.Node), new(testpb.All), new(testpb.Scalars), new(testpb.Empty)}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				req, resp := types[(g+i)%len(types)], types[i%len(types)]
				s := c.Schema(req, resp)
				if err := c.CompareSchema(req, resp, s); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCompareSchema(t *testing.T) {
	c := binary.New(kernel.Limits{})
	req, resp, node := new(echopb.SayRequest), new(echopb.SayResponse), new(testpb.Node)
	for _, tc := range []struct {
		name string
		peer string
		want []string // nothing: nil error
	}{
		{"equal", c.Schema(req, resp), nil},
		{"request differs", c.Schema(node, resp), []string{fmt.Sprintf(
			"codec.binary: request message axon.example.v1.SayRequest: schema fingerprint mismatch: sender 0x%016x, receiver 0x%016x (both sides must be generated from the same .proto, or use the proto codec)",
			node.AxonFingerprint(), req.AxonFingerprint())}},
		{"response differs", c.Schema(req, node), []string{fmt.Sprintf(
			"response message axon.example.v1.SayResponse: schema fingerprint mismatch: sender 0x%016x, receiver 0x%016x",
			node.AxonFingerprint(), resp.AxonFingerprint())}},
		{"both differ", c.Schema(node, node), []string{"request message axon.example.v1.SayRequest", "; response message axon.example.v1.SayResponse"}},
		{"malformed", "ecfe8888dbdd6f4c", []string{`codec.binary: malformed schema fingerprint "ecfe8888dbdd6f4c" from the peer: want two 16-digit hex numbers joined by a dot (request.response)`}},
		{"signed", "+" + c.Schema(req, resp)[1:], []string{"malformed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.CompareSchema(req, resp, tc.peer)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			se := status.FromError(err)
			if se.Code() != status.FailedPrecondition {
				t.Fatalf("got %v, want FAILED_PRECONDITION", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(se.Message(), w) {
					t.Errorf("got  %q\nwant it to contain %q", se.Message(), w)
				}
			}
		})
	}
}
