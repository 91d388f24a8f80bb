package kernel

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel/config"
)

// Kind names an extension point.
type Kind string

// The extension points a Factory can build for.
const (
	KindTransport   Kind = "transport"   // builds a Transport
	KindProtocol    Kind = "protocol"    // builds a Protocol
	KindCodec       Kind = "codec"       // builds a Codec
	KindRegistry    Kind = "registry"    // builds a Resolver (and maybe a Registry)
	KindInterceptor Kind = "interceptor" // builds an Interceptor
	KindBalancer    Kind = "balancer"    // builds a Balancer
	KindRouter      Kind = "router"      // builds a Router
)

// BuildContext is what a factory may use while it builds an instance. It is
// valid for the duration of the Build call; the logger may be retained.
type BuildContext struct {
	// Logger is the process logger, tagged with the plugin's kind and name.
	Logger *slog.Logger
	// Generation is the number of the configuration generation being built.
	Generation uint64
	// Limits are the resource limits of the side being built.
	Limits Limits
	// Service is the configuration's service name (an identity for
	// credentials that issue their own certificates).
	Service string
	// TLS is the TLS of the listener or client a transport is built for;
	// nil for plaintext. Only a TLSTransport uses it.
	TLS *TLS
	// Protocols names, for a protocol built for a listener, every protocol
	// of that listener in config order (itself included), so that
	// protocols that could serve the same connections can agree which
	// does; nil when building a client.
	Protocols []string
}

// Factory builds instances of one plugin for one generation. Factories are
// created once per process and must be safe for concurrent use.
type Factory interface {
	// Kind is the extension point the factory builds for.
	Kind() Kind
	// Name is how configuration selects the plugin, unique within its kind.
	Name() string
	// Build decodes opts strictly into the plugin's typed config and returns
	// a new instance. Errors name the offending key path.
	Build(bc BuildContext, opts config.Raw) (any, error)
}

// NewFactory returns a Factory whose instances are built by build from a
// typed config C. defaults returns a config holding every default; the
// options block of the YAML is decoded strictly over it, so an unknown key
// or a bad value is an error naming its full path.
func NewFactory[C, T any](kind Kind, name string, defaults func() C, build func(BuildContext, C) (T, error)) Factory {
	return &typedFactory[C, T]{kind: kind, name: name, defaults: defaults, build: build}
}

type typedFactory[C, T any] struct {
	kind     Kind
	name     string
	defaults func() C
	build    func(BuildContext, C) (T, error)
}

func (f *typedFactory[C, T]) Kind() Kind   { return f.kind }
func (f *typedFactory[C, T]) Name() string { return f.name }

func (f *typedFactory[C, T]) Build(bc BuildContext, opts config.Raw) (any, error) {
	cfg := f.defaults()
	if err := opts.Decode(&cfg); err != nil {
		return nil, err
	}
	inst, err := f.build(bc, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s.%s: %w", f.kind, f.name, err)
	}
	return inst, nil
}

// FactoryGroup is the fx value group that plugins contribute factories to.
const FactoryGroup = `group:"axon.factories"`

// ProvideFactory returns an fx option that contributes f to the catalog.
func ProvideFactory(f Factory) fx.Option {
	return fx.Provide(fx.Annotate(func() Factory { return f }, fx.ResultTags(FactoryGroup)))
}

// Catalog indexes factories by kind and name. It is immutable after
// NewCatalog and safe for concurrent use.
type Catalog struct {
	byKind map[Kind]map[string]Factory
}

// NewCatalog indexes factories. Two factories with the same kind and name are
// an error that names both the duplicate and the known names.
func NewCatalog(factories []Factory) (*Catalog, error) {
	c := &Catalog{byKind: make(map[Kind]map[string]Factory)}
	for _, f := range factories {
		m := c.byKind[f.Kind()]
		if m == nil {
			m = make(map[string]Factory)
			c.byKind[f.Kind()] = m
		}
		if _, dup := m[f.Name()]; dup {
			return nil, fmt.Errorf("kernel: duplicate %s plugin %q (registered: %s)", f.Kind(), f.Name(), strings.Join(c.Names(f.Kind()), ", "))
		}
		m[f.Name()] = f
	}
	return c, nil
}

// Lookup returns the factory of kind named name, or an error listing the
// names known for that kind.
func (c *Catalog) Lookup(kind Kind, name string) (Factory, error) {
	if f, ok := c.byKind[kind][name]; ok {
		return f, nil
	}
	known := c.Names(kind)
	if len(known) == 0 {
		return nil, fmt.Errorf("kernel: unknown %s plugin %q (no %s plugins are registered)", kind, name, kind)
	}
	return nil, fmt.Errorf("kernel: unknown %s plugin %q (known: %s)", kind, name, strings.Join(known, ", "))
}

// Names returns the sorted names registered for kind.
func (c *Catalog) Names(kind Kind) []string {
	names := make([]string, 0, len(c.byKind[kind]))
	for n := range c.byKind[kind] {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// build looks up the plugin that the config key at key names and builds it
// from opts, checking that the instance has type T.
func build[T any](c *Catalog, bc BuildContext, kind Kind, name, key string, opts config.Raw) (T, error) {
	var zero T
	f, err := c.Lookup(kind, name)
	if err != nil {
		return zero, fmt.Errorf("config: %s: %w", key, err)
	}
	bc.Logger = bc.Logger.With("plugin", string(kind)+"."+name)
	inst, err := f.Build(bc, opts)
	if err != nil {
		return zero, err
	}
	t, ok := inst.(T)
	if !ok {
		return zero, fmt.Errorf("kernel: %s plugin %q built %T, which is not a %s", kind, name, inst, kind)
	}
	return t, nil
}
