// Package ratelimit is a server interceptor that limits calls per method,
// per service or per server: a token bucket (a rate with a burst) and a cap
// on calls in progress. A call over a limit fails at once with
// RESOURCE_EXHAUSTED, before its handler runs, and its trailer carries
// axon-retry-after-ms, the milliseconds until the bucket has a token again.
package ratelimit

import (
	"fmt"
	"strings"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// Limit is one set of limits; a zero field means no such limit.
type Limit struct {
	// RPS is the sustained rate of calls per second.
	RPS float64 `yaml:"rps" min:"0" json:"rps,omitempty"`
	// Burst is how many calls may come at once above the rate (default:
	// RPS rounded up, at least 1).
	Burst int `yaml:"burst" min:"0" json:"burst,omitempty"`
	// MaxConcurrent caps the calls in progress.
	MaxConcurrent int `yaml:"max_concurrent" min:"0" json:"max_concurrent,omitempty"`
}

// Config is the rate limiter's options block.
type Config struct {
	// Scope is what one bucket covers: "method" (the default), "service"
	// or "server".
	Scope string `yaml:"scope" oneof:"method service server"`
	// RPS, Burst and MaxConcurrent are the limits of every method, service
	// or the server without an entry in Limits (default: no limit).
	RPS           float64 `yaml:"rps" min:"0"`
	Burst         int     `yaml:"burst" min:"0"`
	MaxConcurrent int     `yaml:"max_concurrent" min:"0"`
	// Limits overrides the limits above by key: a full method name
	// ("/pkg.Service/Method") with scope method, a service name
	// ("pkg.Service") with scope service.
	Limits map[string]Limit `yaml:"limits"`
}

// DefaultConfig returns the defaults: per method, no limits.
func DefaultConfig() Config { return Config{Scope: "method"} }

// Validate checks the keys of Limits against the scope.
func (c *Config) Validate() error {
	for k := range c.Limits {
		switch c.Scope {
		case "method":
			if !strings.HasPrefix(k, "/") || strings.Count(k, "/") != 2 {
				return config.FieldError("limits."+k, k, `a full method name "/pkg.Service/Method" (scope is method)`)
			}
		case "service":
			if strings.Contains(k, "/") {
				return config.FieldError("limits."+k, k, `a service name "pkg.Service" (scope is service)`)
			}
		case "server":
			return config.FieldError("limits", fmt.Sprint(len(c.Limits))+" entries", "no per-key limits with scope server (use default)")
		}
	}
	return nil
}

// Factory builds the rate limiter, named "ratelimit".
var Factory = kernel.NewFactory(kernel.KindInterceptor, "ratelimit", DefaultConfig,
	func(_ kernel.BuildContext, c Config) (kernel.Interceptor, error) {
		l := New(c)
		return kernel.Interceptor{Server: l.Unary, StreamServer: l.Stream, Instance: l}, nil
	})

// Module contributes the rate limiter to an Axon application.
var Module = fx.Module("ratelimit", kernel.ProvideFactory(Factory))
