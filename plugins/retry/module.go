// Package retry is a client interceptor that sends a failed unary call
// again: up to a number of attempts, each within the caller's deadline and
// optionally its own timeout, after an exponential backoff with jitter, only
// for retryable status codes, and only for idempotent methods unless the
// server refused the call before running it. A retry budget caps retries at
// a fraction of calls (plus a small floor per second), so a failing backend
// sees at most 1 + budget_ratio times its normal traffic. A retry carries the
// metadata flag axon-retry-attempt; a handler's outgoing calls made with the
// context of a call that is itself a retry are not retried again, so retries
// do not multiply along a chain of services.
package retry

import (
	"fmt"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/status"
)

// Config is the retry interceptor's options block.
type Config struct {
	// MaxAttempts is the most attempts per call, the first included
	// (default 3).
	MaxAttempts int `yaml:"max_attempts" min:"1" max:"10"`
	// PerAttemptTimeout bounds each attempt, within the caller's deadline;
	// 0 (the default) gives each attempt what is left of the call's time.
	PerAttemptTimeout time.Duration `yaml:"per_attempt_timeout" min:"0s"`
	// InitialBackoff is the wait before the first retry (default 25ms); it
	// grows by Multiplier per retry up to MaxBackoff (default 1s).
	InitialBackoff time.Duration `yaml:"initial_backoff" min:"0s"`
	MaxBackoff     time.Duration `yaml:"max_backoff" min:"0s"`
	Multiplier     float64       `yaml:"multiplier" min:"1" max:"10"`
	// Jitter is the fraction of each backoff that is random (default 0.2:
	// a backoff d waits between 0.8d and d).
	Jitter float64 `yaml:"jitter" min:"0" max:"1"`
	// RetryableCodes are the status codes retried, by name (default
	// UNAVAILABLE). An attempt that ran out of its per-attempt timeout
	// while the call still has time is retried too.
	RetryableCodes []string `yaml:"retryable_codes"`
	// IdempotentMethods lists the methods that may be retried after they
	// may have run: full names ("/pkg.Service/Method") or a service with
	// "/*" ("/pkg.Service/*"). Calls whose kernel.Spec is Idempotent (made
	// with the call option kernel.Idempotent(), or to a method that is
	// idempotent) and calls made with retry.Idempotent(ctx) are idempotent
	// too. Other calls are retried only when the server refused them
	// before running them.
	IdempotentMethods []string `yaml:"idempotent_methods"`
	// BudgetRatio is the most retries as a fraction of calls (default
	// 0.2).
	BudgetRatio float64 `yaml:"budget_ratio" min:"0" max:"10"`
	// BudgetFloor is a number of retries per second allowed whatever the
	// ratio, so that a client with few calls can still retry (default 10).
	BudgetFloor int `yaml:"budget_floor" min:"0" max:"100000"`
	// HedgeAfter, when above 0, sends a backup attempt of an idempotent
	// call that has not answered after this long (for example the
	// method's observed p95 latency); the first success wins and the
	// other attempt is cancelled. A backup counts against the budget like
	// a retry. Default 0: no hedging.
	HedgeAfter time.Duration `yaml:"hedge_after" min:"0s"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxAttempts:    3,
		InitialBackoff: 25 * time.Millisecond,
		MaxBackoff:     time.Second,
		Multiplier:     2,
		Jitter:         0.2,
		RetryableCodes: []string{"UNAVAILABLE"},
		BudgetRatio:    0.2,
		BudgetFloor:    10,
	}
}

// Validate checks the codes and the method names.
func (c *Config) Validate() error {
	for i, name := range c.RetryableCodes {
		if _, ok := status.ParseCode(name); !ok {
			return config.FieldError(fmt.Sprintf("retryable_codes[%d]", i), name, "a status code name such as UNAVAILABLE")
		}
	}
	for i, m := range c.IdempotentMethods {
		if len(m) < 2 || m[0] != '/' {
			return config.FieldError(fmt.Sprintf("idempotent_methods[%d]", i), m, `a method "/pkg.Service/Method" or "/pkg.Service/*"`)
		}
	}
	if c.MaxBackoff < c.InitialBackoff {
		return config.FieldError("max_backoff", c.MaxBackoff.String(), "at least initial_backoff")
	}
	return nil
}

// Factory builds the retry interceptor, named "retry".
var Factory = kernel.NewFactory(kernel.KindInterceptor, "retry", DefaultConfig,
	func(bc kernel.BuildContext, c Config) (kernel.Interceptor, error) {
		r := New(c)
		return kernel.Interceptor{Client: r.Intercept, Instance: r}, nil
	})

// Module contributes the retry plugin to an Axon application.
var Module = fx.Module("retry", kernel.ProvideFactory(Factory))
