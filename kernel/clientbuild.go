package kernel

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/axonrpc/axon/kernel/config"
)

// BuiltClient is a Client together with the plugin instances it was built
// from; Close closes both.
type BuiltClient struct {
	*Client
	closers []io.Closer
}

// Close closes the client's connections and its plugins.
func (b *BuiltClient) Close() error {
	errs := []error{b.Client.Close()}
	for _, c := range b.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
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
	b := &BuiltClient{}
	own := func(v any) {
		if c, ok := v.(io.Closer); ok {
			b.closers = append(b.closers, c)
		}
	}
	fail := func(err error) (*BuiltClient, error) {
		for _, c := range b.closers {
			c.Close()
		}
		return nil, err
	}
	bc := BuildContext{Logger: log, Limits: cfg.Client.Limits.WithDefaults()}
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
	if o.Codec, err = build[Codec](cat, bc, KindCodec, cfg.Codec, "codec", config.Raw{}); err != nil {
		return fail(err)
	}
	if o.Protocol, err = build[Protocol](cat, bc, KindProtocol, cfg.Client.Protocol, "client.protocol", config.Raw{}); err != nil {
		return fail(err)
	}
	own(o.Protocol)
	if !strings.Contains(target, "://") {
		if o.Resolver, err = build[Resolver](cat, bc, KindRegistry, cfg.Registry.Use, "registry.use", withPath(cfg.Registry.Options, "registry")); err != nil {
			return fail(err)
		}
		own(o.Resolver)
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
		own(tr)
		o.Transports[schemeOf(name, tr)] = tr
	}
	for i, pc := range cfg.Client.Interceptors {
		path := fmt.Sprintf("client.interceptors[%d]", i)
		ic, err := build[Interceptor](cat, bc, KindInterceptor, pc.Use, path+".use", withPath(pc.Options, path))
		if err != nil {
			return fail(err)
		}
		if ic.Client == nil && ic.StreamClient == nil {
			return fail(fmt.Errorf("config: %s.use: interceptor %q has no client side", path, pc.Use))
		}
		own(ic)
		o.Interceptors = append(o.Interceptors, ic)
	}
	if b.Client, err = NewClient(o); err != nil {
		return fail(err)
	}
	return b, nil
}
