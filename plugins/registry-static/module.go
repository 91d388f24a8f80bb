// Package static is a registry whose endpoints are listed in the
// configuration. Register and Deregister are accepted and change nothing.
package static

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
)

// Config is the registry's options block: endpoints by service name.
type Config struct {
	// Endpoints maps a service name to its endpoint addresses, such as
	// "tcp://127.0.0.1:7443" (a bare host:port means tcp).
	Endpoints map[string][]string `yaml:"endpoints"`
	// Instances maps a service name to endpoints with routing labels and
	// weights; they are added to the service's Endpoints.
	Instances map[string][]Instance `yaml:"instances"`
}

// Instance is one endpoint with its labels and weight.
type Instance struct {
	// Address is the endpoint address, as in Endpoints.
	Address string `yaml:"address" required:"true"`
	// Labels are routing attributes, such as version: v2 (default none).
	Labels map[string]string `yaml:"labels"`
	// Weight is the relative share of traffic for weighted balancers
	// (default 1).
	Weight int `yaml:"weight" min:"1" max:"1000000"`
}

// Registry resolves services from a fixed table. It is safe for concurrent
// use.
type Registry struct{ eps map[string][]kernel.Endpoint }

// New returns a registry serving cfg's table.
func New(cfg Config) *Registry {
	r := &Registry{eps: make(map[string][]kernel.Endpoint, len(cfg.Endpoints))}
	for svc, addrs := range cfg.Endpoints {
		for _, a := range addrs {
			r.eps[svc] = append(r.eps[svc], kernel.Endpoint{Address: a, Weight: 1})
		}
	}
	for svc, insts := range cfg.Instances {
		for _, in := range insts {
			r.eps[svc] = append(r.eps[svc], kernel.Endpoint{Address: in.Address, Labels: in.Labels, Weight: max(in.Weight, 1)})
		}
	}
	return r
}

// Resolve implements kernel.Resolver.
func (r *Registry) Resolve(_ context.Context, service string) ([]kernel.Endpoint, error) {
	if eps, ok := r.eps[service]; ok && len(eps) > 0 {
		return eps, nil
	}
	known := make([]string, 0, len(r.eps))
	for s := range r.eps {
		known = append(known, s)
	}
	sort.Strings(known)
	return nil, fmt.Errorf("registry.static: no endpoints for service %q (known: %s)", service, strings.Join(known, ", "))
}

// Register implements kernel.Registry; a static table does not change.
func (r *Registry) Register(context.Context, string, []kernel.Endpoint) error { return nil }

// Deregister implements kernel.Registry; a static table does not change.
func (r *Registry) Deregister(context.Context, string, []kernel.Endpoint) error { return nil }

// Factory builds the registry, named "static".
var Factory = kernel.NewFactory(kernel.KindRegistry, "static", func() Config { return Config{} },
	func(_ kernel.BuildContext, cfg Config) (kernel.Resolver, error) { return New(cfg), nil })

// Module contributes the static registry to an Axon application.
var Module = fx.Module("registry.static", kernel.ProvideFactory(Factory))
