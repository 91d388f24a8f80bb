package uds_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/transporttest"
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
	rt := transporttest.ServeConfig(t, yaml, uds.Factory, native.Factory, protocodec.Factory, static.Factory)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
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
	transporttest.Echo(t, c, "over uds")
	if err := rt.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Dial(ctx, path); err == nil {
		t.Error("the socket still answers after shutdown")
	}
}
