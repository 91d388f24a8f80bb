package kernel

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/axonrpc/axon/kernel/config"
)

// Config is an Axon process's configuration: what one generation runs. It
// is decoded strictly from YAML (see LoadConfig); every field has a default.
type Config struct {
	// Service is the logical name this server registers under.
	Service string `yaml:"service" required:"true"`
	// Listen lists the server's listeners; none means a client-only process.
	Listen []ListenConfig `yaml:"listen"`
	// Codec is the content subtype clients send (default "proto").
	Codec string `yaml:"codec"`
	// TLS is the default TLS block of listeners and clients.
	TLS TLSConfig `yaml:"tls"`
	// Registry selects the registry plugin that resolves services.
	Registry PluginConfig `yaml:"registry"`
	// Instance is what this server publishes about itself with its
	// endpoints: labels (such as version: v2) that clients' routers match,
	// and a weight for weighted balancers.
	Instance InstanceConfig `yaml:"instance"`
	Client   ClientConfig   `yaml:"client"`
	Server   ServerConfig   `yaml:"server"`
	Log      LogConfig      `yaml:"log"`
}

// InstanceConfig is the registry entry a server publishes besides its
// addresses.
type InstanceConfig struct {
	// Labels are routing attributes, such as version: v2 (default none).
	Labels map[string]string `yaml:"labels"`
	// Weight is the relative share of traffic; 0 (the default) means 1.
	Weight int `yaml:"weight" min:"0" max:"1000000"`
}

// ListenConfig is one listener.
type ListenConfig struct {
	// Transport names the transport plugin (default "tcp").
	Transport string `yaml:"transport"`
	// Address is what the transport listens on, such as "127.0.0.1:7443".
	Address string `yaml:"address" required:"true"`
	// Protocols served on this listener (default [axon]).
	Protocols []string `yaml:"protocols"`
	// TLS overrides the top-level TLS block for this listener.
	TLS *TLSConfig `yaml:"tls"`
	// Options are the transport plugin's own settings.
	Options config.Raw `yaml:"options"`
	// ProtocolOptions are the protocol plugins' own settings, by protocol
	// name: protocol_options: {grpc-web: {cors: {...}}}. Each key must be a
	// protocol of this listener; unnamed protocols use their defaults.
	ProtocolOptions map[string]config.Raw `yaml:"protocol_options"`
}

// protocolOptions returns the options block of the listener's protocol
// name, found under path ("listen[0]").
func (l *ListenConfig) protocolOptions(name, path string) config.Raw {
	raw := l.ProtocolOptions[name]
	if raw.Path == "" {
		raw.Path = path + ".protocol_options." + name
	}
	return raw
}

// TLSConfig is a TLS block. Mode "off" is plaintext and must be chosen
// explicitly; "mutual" (the default) and "dev" arrive with the security work,
// and until then they are rejected with an error saying so.
type TLSConfig struct {
	Mode     string `yaml:"mode" oneof:"off dev mutual"`
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// PluginConfig selects a plugin by name and gives it its options.
type PluginConfig struct {
	Use     string     `yaml:"use"`
	Options config.Raw `yaml:"options"`
}

// Validate requires a plugin name.
func (p *PluginConfig) Validate() error {
	if p.Use == "" {
		return config.FieldError("use", "", "a plugin name")
	}
	return nil
}

// ClientConfig configures outgoing calls.
type ClientConfig struct {
	// ConnsPerEndpoint is how many multiplexed connections to open to each
	// endpoint (see ClientOptions.ConnsPerEndpoint for why the default is 1).
	ConnsPerEndpoint int `yaml:"conns_per_endpoint" min:"1" max:"64"`
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration `yaml:"dial_timeout" min:"1ms" max:"10m"`
	// Timeout is the deadline of calls that have none; 0 means none.
	Timeout time.Duration `yaml:"timeout" min:"0s"`
	// Protocol is the protocol clients speak (default "axon").
	Protocol     string         `yaml:"protocol"`
	Interceptors []PluginConfig `yaml:"interceptors"`
	Limits       Limits         `yaml:"limits"`
	// Transports gives a transport's client-side options by transport name,
	// such as the CA a QUIC client trusts; unnamed ones use their defaults.
	Transports map[string]TransportOptions `yaml:"transports"`
	// MethodTimeouts caps the time of calls to a method, by full name
	// ("/pkg.Service/Method"): a call gets the earlier of its own deadline
	// and now plus the method's timeout.
	MethodTimeouts map[string]time.Duration `yaml:"method_timeouts" min:"1ms"`
	// Balancer selects the balancer plugin that picks an endpoint per call
	// (default round_robin, built in).
	Balancer PluginConfig `yaml:"balancer"`
	// Router selects the router plugin that narrows a call's endpoints by
	// rules (such as colour); none by default.
	Router *PluginConfig `yaml:"router"`
	// Outlier configures outlier ejection of failing endpoints (off by
	// default).
	Outlier OutlierConfig `yaml:"outlier"`
}

// TransportOptions is a transport plugin's options block.
type TransportOptions struct {
	Options config.Raw `yaml:"options"`
}

// ServerConfig configures how the server handles calls.
type ServerConfig struct {
	Interceptors []PluginConfig `yaml:"interceptors"`
	// Codecs lists the content subtypes the server accepts; the first is the
	// default for calls that name none.
	Codecs []string `yaml:"codecs"`
	Limits Limits   `yaml:"limits"`
	// DrainTimeout bounds how long a replaced generation, or a stopping
	// server, waits for calls in flight.
	DrainTimeout time.Duration `yaml:"drain_timeout" min:"0s" max:"1h"`
	// Handover is how long, when a new generation publishes endpoints the
	// old one did not have (a move to another listener) to a registry that
	// clients watch, both stay registered before the old one is
	// deregistered and drained: clients connect to the new endpoints
	// meanwhile, so no call waits for a dial. Zero deregisters at once.
	Handover time.Duration `yaml:"handover" min:"0s" max:"1m"`
}

// LogConfig configures the process logger.
type LogConfig struct {
	Level  string `yaml:"level" oneof:"debug info warn error"`
	Format string `yaml:"format" oneof:"text json"`
}

// DefaultConfig returns a configuration holding every default.
func DefaultConfig() Config {
	return Config{
		Codec:    "proto",
		TLS:      TLSConfig{Mode: "mutual"},
		Registry: PluginConfig{Use: "local"},
		Client: ClientConfig{
			ConnsPerEndpoint: 1,
			DialTimeout:      5 * time.Second,
			Protocol:         "axon",
			Limits:           DefaultLimits(),
			Balancer:         PluginConfig{Use: "round_robin"},
			Outlier:          DefaultOutlierConfig(),
		},
		Server: ServerConfig{
			Codecs:       []string{"proto"},
			Limits:       DefaultLimits(),
			DrainTimeout: 30 * time.Second,
			Handover:     250 * time.Millisecond,
		},
		Log: LogConfig{Level: "info", Format: "text"},
	}
}

// Validate checks what field tags cannot: listeners are distinct and name
// their protocols, and every TLS block asks for something available now.
func (c *Config) Validate() error {
	if err := c.TLS.check(); err != nil {
		return config.FieldError("tls.mode", c.TLS.Mode, err.Error())
	}
	seen := map[string]int{}
	for i := range c.Listen {
		l := &c.Listen[i]
		if l.Transport == "" {
			l.Transport = "tcp"
		}
		if len(l.Protocols) == 0 {
			l.Protocols = []string{"axon"}
		}
		for j, p := range l.Protocols {
			if slices.Index(l.Protocols, p) != j {
				return config.FieldError(fmt.Sprintf("listen[%d].protocols[%d]", i, j), p, "a protocol not already listed")
			}
		}
		for _, name := range slices.Sorted(maps.Keys(l.ProtocolOptions)) {
			if !slices.Contains(l.Protocols, name) {
				return config.FieldError(fmt.Sprintf("listen[%d].protocol_options.%s", i, name), name,
					fmt.Sprintf("a protocol of this listener (%s)", strings.Join(l.Protocols, ", ")))
			}
		}
		if l.TLS != nil {
			if err := l.TLS.check(); err != nil {
				return config.FieldError(fmt.Sprintf("listen[%d].tls.mode", i), l.TLS.Mode, err.Error())
			}
		}
		key := l.Transport + "://" + l.Address
		if j, dup := seen[key]; dup {
			return config.FieldError(fmt.Sprintf("listen[%d].address", i), l.Address,
				fmt.Sprintf("an address not already used by listen[%d]", j))
		}
		seen[key] = i
	}
	if len(c.Server.Codecs) == 0 {
		return config.FieldError("server.codecs", "[]", "at least one codec name")
	}
	return nil
}

func (t *TLSConfig) check() error {
	switch t.Mode {
	case "off", "":
		return nil
	default:
		return fmt.Errorf("\"off\": TLS mode %q arrives with the security work, and until then plaintext must be chosen explicitly", t.Mode)
	}
}

// ParseConfig decodes a configuration tree (see config.Load) strictly over
// the defaults.
func ParseConfig(tree map[string]any) (*Config, error) {
	cfg := DefaultConfig()
	if err := config.Decode(tree, "", &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// LoadConfig reads the YAML file at path with environ's AXON_ overrides and
// decodes it strictly.
func LoadConfig(path string, environ []string) (*Config, error) {
	tree, err := config.Load(path, environ)
	if err != nil {
		return nil, err
	}
	return ParseConfig(tree)
}
