package tcp_test

import (
	"testing"

	"github.com/axonrpc/axon/kernel/transporttest"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

func TestConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Harness{
		Transport: tcp.New(tcp.DefaultConfig()),
		Address:   func(testing.TB) string { return "127.0.0.1:0" },
		Protocol:  native.New(native.DefaultConfig()),
		Codec:     protocodec.Codec{},
	})
}
