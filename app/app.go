// Package app composes Axon's standard plugin set and runs the axon
// command. It is the only package that lists the standard plugins.
package app

import (
	"go.uber.org/fx"

	bincodec "github.com/axonrpc/axon/plugins/codec-binary"
	jsoncodec "github.com/axonrpc/axon/plugins/codec-json"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
	local "github.com/axonrpc/axon/plugins/registry-local"
	static "github.com/axonrpc/axon/plugins/registry-static"
	health "github.com/axonrpc/axon/plugins/service-health"
	reflection "github.com/axonrpc/axon/plugins/service-reflection"
	quic "github.com/axonrpc/axon/plugins/transport-quic"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
	uds "github.com/axonrpc/axon/plugins/transport-uds"
)

// Plugins is the standard plugin set.
var Plugins = fx.Options(
	tcp.Module,
	uds.Module,
	quic.Module,
	native.Module,
	grpcproto.Module,
	bincodec.Module,
	protocodec.Module,
	jsoncodec.Module,
	static.Module,
	local.Module,
	health.Module,
	reflection.Module,
)
