package quic_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	static "github.com/axonrpc/axon/plugins/registry-static"
	quic "github.com/axonrpc/axon/plugins/transport-quic"
)

// TestRuntime: the README's listener block runs in a kernel Runtime, and a
// client with the same state_dir calls it.
func TestRuntime(t *testing.T) {
	state := t.TempDir()
	yaml := fmt.Sprintf(`
service: echo
tls: {mode: "off"}   # the kernel's TLS block; QUIC always runs TLS 1.3 from its own options
listen:
  - transport: quic
    address: "127.0.0.1:0"
    options:
      state_dir: %q
      idle_timeout: 30s
      keep_alive: 10s
      max_incoming_streams: 16
      allow_0rtt: false
registry: {use: static}
`, state)
	tree, err := config.LoadBytes("test.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kernel.ParseConfig(tree)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := kernel.NewCatalog([]kernel.Factory{quic.Factory, native.Factory, protocodec.Factory, static.Factory})
	if err != nil {
		t.Fatal(err)
	}
	svc := kernel.NewService("axon.test.v1.Echo",
		kernel.Unary("Echo", func(_ context.Context, r *wrapperspb.StringValue) (*wrapperspb.StringValue, error) { return r, nil }))
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc})
	if err != nil {
		t.Fatal(err)
	}
	rt := kernel.NewRuntime(cat, table, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rt.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(ctx)

	ccfg := quic.DefaultConfig()
	ccfg.StateDir = state
	c, err := kernel.NewClient(kernel.ClientOptions{
		Target:     rt.Endpoints()[0].Address,
		Transports: map[string]kernel.Transport{"quic": quic.New(ccfg)},
		Protocol:   native.New(native.DefaultConfig()),
		Codec:      protocodec.Codec{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var resp wrapperspb.StringValue
	if err := c.Invoke(ctx, "/axon.test.v1.Echo/Echo", wrapperspb.String("over quic"), &resp); err != nil || resp.GetValue() != "over quic" {
		t.Fatalf("call %s: %q, %v", rt.Endpoints()[0].Address, resp.GetValue(), err)
	}
}
