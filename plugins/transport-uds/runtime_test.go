package uds_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	static "github.com/axonrpc/axon/plugins/registry-static"
	uds "github.com/axonrpc/axon/plugins/transport-uds"
)

// TestRuntime: the README's listener block runs in a kernel Runtime and
// answers calls; the socket file goes away when the runtime shuts down.
func TestRuntime(t *testing.T) {
	path := filepath.Join(shortDir(t), "echo.sock")
	yaml := fmt.Sprintf(`
service: echo
tls: {mode: "off"}
listen:
  - transport: uds
    address: %q
    options: { mode: "0660" }
registry: {use: static}
`, path)
	tree, err := config.LoadBytes("test.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kernel.ParseConfig(tree)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := kernel.NewCatalog([]kernel.Factory{uds.Factory, native.Factory, protocodec.Factory, static.Factory})
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
	if got, want := rt.Endpoints()[0].Address, "unix://"+path; got != want {
		t.Errorf("endpoint %q, want %q", got, want)
	}
	tr := uds.New(uds.DefaultConfig())
	c, err := kernel.NewClient(kernel.ClientOptions{
		Target:     rt.Endpoints()[0].Address,
		Transports: map[string]kernel.Transport{"unix": tr},
		Protocol:   native.New(native.DefaultConfig()),
		Codec:      protocodec.Codec{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var resp wrapperspb.StringValue
	if err := c.Invoke(ctx, "/axon.test.v1.Echo/Echo", wrapperspb.String("over uds"), &resp); err != nil || resp.GetValue() != "over uds" {
		t.Fatalf("call %s: %q, %v", rt.Endpoints()[0].Address, resp.GetValue(), err)
	}
	if err := rt.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Dial(ctx, path); err == nil {
		t.Error("the socket still answers after shutdown")
	}
}
