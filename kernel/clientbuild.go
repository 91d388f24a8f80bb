package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/axonrpc/axon/kernel/config"
)

// BuiltClient is a Client together with the plugin instances it was built
// from; Close closes both.
type BuiltClient struct {
	*Client
	base instances // the protocol, registry and transports

	mu     sync.Mutex
	cat    *Catalog
	log    *slog.Logger
	policy *instances // of the interceptors, balancer and router in use
}

// Close closes the client's connections and cleans up its plugins.
func (b *BuiltClient) Close() error {
	errs := []error{b.Client.Close()}
	b.mu.Lock()
	pol := b.policy
	b.policy = nil
	b.mu.Unlock()
	if pol != nil {
		errs = append(errs, pol.cleanup())
	}
	errs = append(errs, b.base.cleanup())
	return errors.Join(errs...)
}

// View implements ClientViewer: the client's sessions and the plugins of
// its policy.
func (b *BuiltClient) View() ClientView {
	v := ClientView{Target: b.o.Target, Sessions: b.Sessions()}
	b.mu.Lock()
	pol := b.policy
	b.mu.Unlock()
	if pol != nil {
		v.Plugins = pol.plugins()
	}
	return v
}

// Reload applies the policy part of cfg's client section (timeout,
// method_timeouts, interceptors, balancer, router, outlier) to the running
// client: the new plugins are built and started, swapped in atomically for
// new calls, and the old ones cleaned up. Connections are kept and no call
// fails. When the new policy cannot be built or started, the old one stays
// and the error is returned.
func (b *BuiltClient) Reload(cfg *Config) error {
	pol, insts, err := b.preparePolicy(cfg)
	if err != nil {
		return err
	}
	b.swap(pol, insts)
	return nil
}

// preparePolicy builds and starts the policy of cfg's client section.
func (b *BuiltClient) preparePolicy(cfg *Config) (*clientPolicy, *instances, error) {
	bc := BuildContext{Logger: b.log, Limits: cfg.Client.Limits.WithDefaults()}
	pol, insts, err := buildPolicy(b.cat, bc, &cfg.Client)
	if err != nil {
		return nil, nil, err
	}
	if err := insts.start(context.Background()); err != nil {
		insts.cleanup()
		return nil, nil, err
	}
	return pol, insts, nil
}

// swap makes pol the client's policy and cleans up the plugins of the old
// one.
func (b *BuiltClient) swap(pol *clientPolicy, insts *instances) {
	o := b.Client.o
	pol.apply(&o)
	b.mu.Lock()
	old := b.policy
	b.policy = insts
	b.Client.Reconfigure(o)
	b.mu.Unlock()
	if old != nil {
		old.cleanup()
	}
}

// clientPolicy is what buildPolicy builds from a client section.
type clientPolicy struct {
	timeout      time.Duration
	timeouts     map[string]time.Duration
	interceptors []Interceptor
	balancer     Balancer
	router       Router
	outlier      OutlierConfig
}

func (p *clientPolicy) apply(o *ClientOptions) {
	o.Timeout, o.MethodTimeouts, o.Interceptors = p.timeout, p.timeouts, p.interceptors
	o.Balancer, o.Router, o.Outlier = p.balancer, p.router, p.outlier
}

// buildPolicy builds the interceptors, balancer and router of cc. On error
// what it built is cleaned up.
func buildPolicy(cat *Catalog, bc BuildContext, cc *ClientConfig) (_ *clientPolicy, _ *instances, err error) {
	insts := new(instances)
	defer func() {
		if err != nil {
			insts.cleanup()
		}
	}()
	p := &clientPolicy{timeout: cc.Timeout, timeouts: cc.MethodTimeouts, outlier: cc.Outlier}
	for i, pc := range cc.Interceptors {
		path := fmt.Sprintf("client.interceptors[%d]", i)
		ic, err := build[Interceptor](cat, bc, KindInterceptor, pc.Use, path+".use", withPath(pc.Options, path))
		if err != nil {
			return nil, nil, err
		}
		insts.own(KindInterceptor, pc.Use, path, ic)
		if ic.Client == nil && ic.StreamClient == nil && ic.Guard == nil {
			return nil, nil, fmt.Errorf("config: %s.use: interceptor %q has no client side", path, pc.Use)
		}
		p.interceptors = append(p.interceptors, ic)
	}
	if _, lookupErr := cat.Lookup(KindBalancer, cc.Balancer.Use); lookupErr != nil && cc.Balancer.Use == "round_robin" {
		p.balancer = RoundRobin() // built in, unless a plugin takes the name
	} else if p.balancer, err = build[Balancer](cat, bc, KindBalancer, cc.Balancer.Use, "client.balancer.use", withPath(cc.Balancer.Options, "client.balancer")); err != nil {
		return nil, nil, err
	}
	insts.own(KindBalancer, cc.Balancer.Use, "client.balancer", p.balancer)
	if cc.Router != nil {
		if p.router, err = build[Router](cat, bc, KindRouter, cc.Router.Use, "client.router.use", withPath(cc.Router.Options, "client.router")); err != nil {
			return nil, nil, err
		}
		insts.own(KindRouter, cc.Router.Use, "client.router", p.router)
	}
	return p, insts, nil
}

// BuildClient builds a client for target from cfg's client section, codec
// and registry, with plugins from cat. Every registered transport is
// available for dialing, with its default options, under its URL scheme
// (see Schemer). A target containing
// "://" is an endpoint address; anything else is a service name resolved by
// the registry.
func BuildClient(cat *Catalog, cfg *Config, target string, log *slog.Logger) (*BuiltClient, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &BuiltClient{cat: cat, log: log}
	fail := func(err error) (*BuiltClient, error) {
		b.base.cleanup()
		return nil, err
	}
	bc := BuildContext{Logger: log, Limits: cfg.Client.Limits.WithDefaults(), Service: cfg.Service}
	o := ClientOptions{
		Target:           target,
		Transports:       map[string]Transport{},
		ConnsPerEndpoint: cfg.Client.ConnsPerEndpoint,
		DialTimeout:      cfg.Client.DialTimeout,
		Timeout:          cfg.Client.Timeout,
		Limits:           cfg.Client.Limits,
		Logger:           log,
	}
	var err error
	tcfg, tpath := cfg.tlsFor(cfg.Client.TLS, "client.tls")
	if o.TLS, err = buildTLS(cat, bc, tcfg, tpath, false, &b.base); err != nil {
		return fail(err)
	}
	bc.TLS = o.TLS
	if o.Codec, err = build[Codec](cat, bc, KindCodec, cfg.Codec, "codec", config.Raw{}); err != nil {
		return fail(err)
	}
	if o.Protocol, err = build[Protocol](cat, bc, KindProtocol, cfg.Client.Protocol, "client.protocol", config.Raw{}); err != nil {
		return fail(err)
	}
	b.base.own(KindProtocol, cfg.Client.Protocol, "client.protocol", o.Protocol)
	if !strings.Contains(target, "://") {
		if o.Resolver, err = build[Resolver](cat, bc, KindRegistry, cfg.Registry.Use, "registry.use", withPath(cfg.Registry.Options, "registry")); err != nil {
			return fail(err)
		}
		b.base.own(KindRegistry, cfg.Registry.Use, "registry", o.Resolver)
	}
	for name := range cfg.Client.Transports {
		if _, err := cat.Lookup(KindTransport, name); err != nil {
			return fail(fmt.Errorf("config: client.transports.%s: %w", name, err))
		}
	}
	for _, name := range cat.Names(KindTransport) {
		to, configured := cfg.Client.Transports[name]
		opts := withPath(to.Options, "client.transports."+name)
		tr, err := build[Transport](cat, bc, KindTransport, name, "client.transports."+name, opts)
		if err != nil {
			if configured {
				return fail(err)
			}
			log.Debug("transport unavailable for clients", "transport", name, "err", err)
			continue
		}
		b.base.own(KindTransport, name, "client.transports."+name, tr)
		o.Transports[schemeOf(name, tr)] = tr
	}
	if err := b.base.start(context.Background()); err != nil {
		return fail(err)
	}
	pol, insts, err := b.preparePolicy(cfg)
	if err != nil {
		return fail(err)
	}
	b.policy = insts
	pol.apply(&o)
	if b.Client, err = NewClient(o); err != nil {
		insts.cleanup()
		return fail(err)
	}
	return b, nil
}
