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

// TLSConfig is a TLS block: the top-level one (listeners' and clients'
// default), a listener's, or the client's.
type TLSConfig struct {
	// Mode is mutual (the default: TLS 1.3, certificates both ways),
	// server (only the server presents one) or off (plaintext).
	Mode string `yaml:"mode" oneof:"off server mutual"`
	// Credentials names the credentials plugin: files (the default, from
	// ca_file, cert_file and key_file) or dev (a local development CA).
	Credentials string `yaml:"credentials"`
	// CAFile, CertFile and KeyFile are the files credentials' PEM files:
	// the CAs trusted, this side's certificate chain and its key.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ExpiryWarning is how close to its end the files credentials'
	// certificate in use logs a warning; 0 means a third of its life.
	ExpiryWarning time.Duration `yaml:"expiry_warning" min:"0s" max:"8760h"`
	// MinVersion is "1.3" (the default); a server-mode listener may allow
	// "1.2" (AEAD suites only) for clients that have no TLS 1.3.
	MinVersion string `yaml:"min_version" oneof:"1.2 1.3"`
	// ServerIdentity, in a client's block, is the identity (SPIFFE ID or
	// DNS name) servers must present; empty accepts any server the CAs
	// vouch for (by SPIFFE ID, or by the host dialed).
	ServerIdentity string `yaml:"server_identity"`
	// Options are the credentials plugin's own keys (for files, none).
	Options config.Raw `yaml:"options"`
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
	// TLS overrides the top-level TLS block for outgoing calls.
	TLS *TLSConfig `yaml:"tls"`
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
		TLS:      TLSConfig{Mode: TLSMutual, Credentials: "files", MinVersion: "1.3"},
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
	if err := c.TLS.check("tls"); err != nil {
		return err
	}
	if c.Client.TLS != nil {
		t, path := c.tlsFor(c.Client.TLS, "client.tls")
		if err := t.check(path); err != nil {
			return err
		}
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
			t, path := c.tlsFor(l.TLS, fmt.Sprintf("listen[%d].tls", i))
			if err := t.check(path); err != nil {
				return err
			}
		}
		// Port 0 asks for a port of the system's choosing, a new one for
		// each listener.
		key := l.Transport + "://" + l.Address
		if j, dup := seen[key]; dup && !strings.HasSuffix(l.Address, ":0") {
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

// check checks what the field tags cannot; path is the block's key.
func (t *TLSConfig) check(path string) error {
	if t.Mode == "" {
		t.Mode = TLSMutual
	}
	if t.Credentials == "" {
		t.Credentials = "files"
	}
	if t.MinVersion == "" {
		t.MinVersion = "1.3"
	}
	if t.MinVersion != "1.3" && t.Mode != TLSServer {
		return config.FieldError(path+".min_version", t.MinVersion, "1.3: only a server-mode listener may allow TLS 1.2")
	}
	if t.Mode == TLSOff || t.Credentials == "files" {
		return nil
	}
	for key, v := range map[string]string{"ca_file": t.CAFile, "cert_file": t.CertFile, "key_file": t.KeyFile} {
		if v != "" {
			return config.FieldError(path+"."+key, v, fmt.Sprintf("nothing: it is read by the files credentials, and this block uses %s", t.Credentials))
		}
	}
	return nil
}

// tlsFor returns the TLS block that applies where the override over is
// set (a listener's or the client's), and its key: the override's keys
// over the top-level block's. An override that names no credentials and no
// files takes the top-level block's.
func (c *Config) tlsFor(over *TLSConfig, path string) (TLSConfig, string) {
	if over == nil {
		return c.TLS, "tls"
	}
	m := *over
	if m.Mode == "" {
		m.Mode = c.TLS.Mode
	}
	if m.Credentials == "" && m.CAFile == "" && m.CertFile == "" && m.KeyFile == "" && m.Options.Tree == nil {
		m.Credentials, m.CAFile, m.CertFile, m.KeyFile, m.Options = c.TLS.Credentials, c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile, c.TLS.Options
		m.ExpiryWarning = c.TLS.ExpiryWarning
	}
	if m.MinVersion == "" && m.Mode == c.TLS.Mode {
		m.MinVersion = c.TLS.MinVersion
	}
	if m.ServerIdentity == "" {
		m.ServerIdentity = c.TLS.ServerIdentity
	}
	return m, path
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
