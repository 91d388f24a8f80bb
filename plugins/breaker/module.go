// Package breaker is a circuit-breaker interceptor on
// github.com/sony/gobreaker/v2: one breaker per endpoint and method (or per
// endpoint, or per method), tripping on consecutive failures or on a
// failure ratio, open for a while, then half-open with a few probe calls.
// It acts as a kernel.Guard, so it sees each call once the balancer has
// picked its endpoint, and the client steers calls away from endpoints
// whose breaker is open while others are available.
package breaker

import (
	"fmt"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/status"
)

// Config is the breaker's options block.
type Config struct {
	// Scope is what one breaker covers: "endpoint_method" (the default),
	// "endpoint" or "method".
	Scope string `yaml:"scope" oneof:"endpoint_method endpoint method"`
	// ConsecutiveFailures trips a breaker after that many failures in a row
	// (default 5); 0 leaves tripping to FailureRatio.
	ConsecutiveFailures int `yaml:"consecutive_failures" min:"0" max:"1000000"`
	// FailureRatio trips a breaker when at least MinCalls calls were made
	// in the current interval and this fraction of them failed; 0 (the
	// default) turns the ratio off.
	FailureRatio float64 `yaml:"failure_ratio" min:"0" max:"1"`
	// MinCalls is the number of calls the ratio needs (default 20).
	MinCalls int `yaml:"min_calls" min:"1" max:"1000000"`
	// Interval is how often a closed breaker clears its counts (default
	// 60s); 0 never clears them.
	Interval time.Duration `yaml:"interval" min:"0s" max:"24h"`
	// OpenFor is how long an open breaker fails calls before it lets
	// probes through (default 30s).
	OpenFor time.Duration `yaml:"open_for" min:"1ms" max:"24h"`
	// HalfOpenProbes is how many calls a half-open breaker lets through;
	// when they all succeed it closes, when one fails it opens again
	// (default 1).
	HalfOpenProbes int `yaml:"half_open_probes" min:"1" max:"1000"`
	// FailureCodes are the status codes that count as failures, by name
	// (default UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN,
	// RESOURCE_EXHAUSTED). Other errors, such as INVALID_ARGUMENT, and
	// successes count as successes.
	FailureCodes []string `yaml:"failure_codes"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Scope:               "endpoint_method",
		ConsecutiveFailures: 5,
		MinCalls:            20,
		Interval:            time.Minute,
		OpenFor:             30 * time.Second,
		HalfOpenProbes:      1,
		FailureCodes:        []string{"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN", "RESOURCE_EXHAUSTED"},
	}
}

// Validate checks the codes and that some trip condition is set.
func (c *Config) Validate() error {
	for i, name := range c.FailureCodes {
		if _, ok := status.ParseCode(name); !ok {
			return config.FieldError(fmt.Sprintf("failure_codes[%d]", i), name, "a status code name such as UNAVAILABLE")
		}
	}
	if c.ConsecutiveFailures == 0 && c.FailureRatio == 0 {
		return config.FieldError("consecutive_failures", "0", "a number of failures, or a failure_ratio above 0")
	}
	return nil
}

// Factory builds the breaker interceptor, named "breaker".
var Factory = kernel.NewFactory(kernel.KindInterceptor, "breaker", DefaultConfig,
	func(bc kernel.BuildContext, c Config) (kernel.Interceptor, error) {
		b := New(c, bc.Logger)
		return kernel.Interceptor{Guard: b, Instance: b}, nil
	})

// Module contributes the breaker plugin to an Axon application.
var Module = fx.Module("breaker", kernel.ProvideFactory(Factory))
