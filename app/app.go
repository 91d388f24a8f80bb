// Package app composes Axon's standard plugin set and runs the axon
// command. It is the only package that lists the standard plugins.
package app

import (
	"go.uber.org/fx"

	"github.com/axonrpc/axon/plugins/authz"
	"github.com/axonrpc/axon/plugins/balancer"
	"github.com/axonrpc/axon/plugins/breaker"
	bincodec "github.com/axonrpc/axon/plugins/codec-binary"
	jsoncodec "github.com/axonrpc/axon/plugins/codec-json"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	"github.com/axonrpc/axon/plugins/colour"
	devcreds "github.com/axonrpc/axon/plugins/credentials-dev"
	files "github.com/axonrpc/axon/plugins/credentials-files"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
	"github.com/axonrpc/axon/plugins/ratelimit"
	local "github.com/axonrpc/axon/plugins/registry-local"
	static "github.com/axonrpc/axon/plugins/registry-static"
	"github.com/axonrpc/axon/plugins/retry"
	health "github.com/axonrpc/axon/plugins/service-health"
	reflection "github.com/axonrpc/axon/plugins/service-reflection"
	"github.com/axonrpc/axon/plugins/tracing"
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
	balancer.Module,
	breaker.Module,
	retry.Module,
	ratelimit.Module,
	colour.Module,
	files.Module,
	devcreds.Module,
	authz.Module,
	tracing.Module,
)
