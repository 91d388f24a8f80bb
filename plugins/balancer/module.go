// Package balancer holds Axon's balancer plugins: round_robin,
// weighted_round_robin, p2c (power of two choices) and consistent_hash.
// Each picks one endpoint of the client's target per call; the kernel client
// skips endpoints that are ejected or whose breaker is open when others are
// available, and routers narrow the endpoints before the pick.
package balancer

import (
	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
)

// RoundRobinConfig is round_robin's options block; it has no keys.
type RoundRobinConfig struct{}

// WeightedConfig is weighted_round_robin's options block; it has no keys:
// weights come from the registry (kernel.Endpoint.Weight, default 1).
type WeightedConfig struct{}

// P2CConfig is p2c's options block.
type P2CConfig struct {
	// By is what the two candidates are compared on: "inflight" (the
	// client's calls in progress on each, the default) or "latency" (the
	// EWMA of their latency times one more than their calls in progress).
	By string `yaml:"by" oneof:"inflight latency"`
}

// HashConfig is consistent_hash's options block.
type HashConfig struct {
	// Key is the metadata key whose value is hashed (default
	// "x-affinity-key"). Calls without it are spread round robin.
	Key string `yaml:"key"`
}

// Validate requires a key.
func (c *HashConfig) Validate() error {
	if c.Key == "" {
		return errEmptyKey
	}
	return nil
}

// Factories of the balancer plugins.
var (
	RoundRobinFactory = kernel.NewFactory(kernel.KindBalancer, "round_robin",
		func() RoundRobinConfig { return RoundRobinConfig{} },
		func(kernel.BuildContext, RoundRobinConfig) (kernel.Balancer, error) { return kernel.RoundRobin(), nil })
	WeightedFactory = kernel.NewFactory(kernel.KindBalancer, "weighted_round_robin",
		func() WeightedConfig { return WeightedConfig{} },
		func(kernel.BuildContext, WeightedConfig) (kernel.Balancer, error) { return NewWeighted(), nil })
	P2CFactory = kernel.NewFactory(kernel.KindBalancer, "p2c",
		func() P2CConfig { return P2CConfig{By: "inflight"} },
		func(_ kernel.BuildContext, c P2CConfig) (kernel.Balancer, error) { return NewP2C(c), nil })
	HashFactory = kernel.NewFactory(kernel.KindBalancer, "consistent_hash",
		func() HashConfig { return HashConfig{Key: "x-affinity-key"} },
		func(_ kernel.BuildContext, c HashConfig) (kernel.Balancer, error) { return NewHash(c), nil })
)

// Module contributes the balancer plugins to an Axon application.
var Module = fx.Module("balancer",
	kernel.ProvideFactory(RoundRobinFactory),
	kernel.ProvideFactory(WeightedFactory),
	kernel.ProvideFactory(P2CFactory),
	kernel.ProvideFactory(HashFactory),
)
