package quic_test

import (
	"fmt"
	"testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/transporttest"
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
	rt := transporttest.ServeConfig(t, yaml, quic.Factory, native.Factory, protocodec.Factory, static.Factory)

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
	transporttest.Echo(t, c, "over quic")
}
