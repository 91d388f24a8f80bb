// Package colour carries traffic colours for gray releases and routes calls
// by them. A colour (such as "canary") set on a call with With travels in
// the call's metadata under axon-colour. The "colour" client interceptor
// carries it on: a handler's outgoing calls made with its incoming context
// get the incoming call's colour (and any other configured keys), so the
// colour follows a request through every hop. The "rules" router sends a
// call, by colour, by metadata match or by a stable percentage of callers,
// to the endpoints whose registry labels match, with a stated fallback when
// none do.
package colour

import (
	"fmt"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// Key is the metadata key of a call's colour.
const Key = "axon-colour"

// InterceptorConfig is the colour interceptor's options block.
type InterceptorConfig struct {
	// Propagate lists the metadata keys carried from a handler's incoming
	// call to its outgoing calls (default [axon-colour]).
	Propagate []string `yaml:"propagate"`
	// Colour, when set, colours every call of this client that has no
	// colour of its own (default none).
	Colour string `yaml:"colour"`
}

// Rule sends the calls it matches to the endpoints with Labels. A rule
// matches by Colour, by Match, by Percent, or by all that it sets.
type Rule struct {
	// Name identifies the rule in errors (default "rules[i]").
	Name string `yaml:"name"`
	// Colour matches calls with this colour.
	Colour string `yaml:"colour"`
	// Match matches calls whose metadata has every key with its value.
	Match map[string]string `yaml:"match"`
	// Percent matches this share of callers (0-100), chosen by a hash of
	// the value of metadata key Key, so a caller always gets the same
	// answer; calls without the key do not match.
	Percent float64 `yaml:"percent" min:"0" max:"100"`
	Key     string  `yaml:"key"`
	// Labels selects the endpoints: those whose registry labels include
	// every one of these.
	Labels map[string]string `yaml:"labels"`
	// Fallback says what happens when no endpoint has Labels: "fail" (the
	// default: UNAVAILABLE naming the rule) or "default" (the default
	// pool).
	Fallback string `yaml:"fallback" oneof:"fail default"`
}

// RouterConfig is the rules router's options block.
type RouterConfig struct {
	// Rules are tried in order; the first that matches a call routes it.
	Rules []Rule `yaml:"rules"`
	// DefaultLabels selects the default pool, for calls that match no rule:
	// the endpoints whose labels include these (default {}: every
	// endpoint). When the pool is empty, such calls fail with UNAVAILABLE.
	DefaultLabels map[string]string `yaml:"default_labels"`
}

// Validate checks that every rule matches something and selects something.
func (c *RouterConfig) Validate() error {
	for i := range c.Rules {
		r := &c.Rules[i]
		p := fmt.Sprintf("rules[%d]", i)
		if r.Fallback == "" {
			r.Fallback = "fail"
		}
		if r.Name == "" {
			r.Name = p
		}
		if r.Colour == "" && len(r.Match) == 0 && r.Percent == 0 {
			return config.FieldError(p, "a rule without colour, match or percent", "a rule that matches some calls")
		}
		if r.Percent > 0 && r.Key == "" {
			return config.FieldError(p+".key", "", "the metadata key whose value picks the percentage")
		}
		if len(r.Labels) == 0 {
			return config.FieldError(p+".labels", "{}", "the labels of the endpoints the rule sends calls to")
		}
	}
	return nil
}

// Factories of the colour plugins.
var (
	InterceptorFactory = kernel.NewFactory(kernel.KindInterceptor, "colour",
		func() InterceptorConfig { return InterceptorConfig{Propagate: []string{Key}} },
		func(_ kernel.BuildContext, c InterceptorConfig) (kernel.Interceptor, error) {
			p := NewPropagator(c)
			return kernel.Interceptor{Client: p.Unary, StreamClient: p.Stream}, nil
		})
	RouterFactory = kernel.NewFactory(kernel.KindRouter, "rules",
		func() RouterConfig { return RouterConfig{} },
		func(_ kernel.BuildContext, c RouterConfig) (kernel.Router, error) { return NewRouter(c), nil })
)

// Module contributes the colour interceptor and the rules router.
var Module = fx.Module("colour", kernel.ProvideFactory(InterceptorFactory), kernel.ProvideFactory(RouterFactory))
