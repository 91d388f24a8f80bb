// Package grpc serves gRPC (over HTTP/2: cleartext h2c, or TLS with ALPN
// "h2") and gRPC-Web (over HTTP/1.1 and HTTP/2) from Axon's dispatcher, so that the handlers and the
// interceptor chain that serve native Axon calls also serve any gRPC client
// and browsers. It is the server side only: Axon clients speak the native
// protocol, so NewSession fails (see ErrClientSide).
//
// It registers two protocol plugins, "grpc" and "grpc-web", which share one
// HTTP handler accepting every gRPC and gRPC-Web content type on HTTP/1.1 and
// HTTP/2; they differ only in which connections they claim when several
// protocols share a listener (see Protocol.Match and Protocol.ALPN). Both take the same options
// block (Config).
package grpc

import (
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// Config is the options block of the "grpc" and "grpc-web" protocols
// (listen[].protocol_options.grpc and .grpc-web).
type Config struct {
	// CORS says which cross-origin browser pages may call this server.
	// Cross-origin requests are refused unless their origin is allowed.
	CORS CORSConfig `yaml:"cors"`
	// IdleTimeout closes a connection that has had no call for this long;
	// 0 uses server.limits.idle_timeout.
	IdleTimeout time.Duration `yaml:"idle_timeout" min:"0s" max:"24h"`
}

// CORSConfig is the cross-origin policy for gRPC-Web calls from browsers.
type CORSConfig struct {
	// AllowedOrigins lists the origins ("https://app.example.com") whose
	// pages may call the server; "*" allows any origin. Same-origin requests
	// are always allowed. Empty (the default) denies every other origin.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AllowedHeaders lists request headers a page may send besides the
	// ones every gRPC-Web client sends (content-type, x-grpc-web,
	// x-user-agent, grpc-timeout, grpc-encoding, grpc-accept-encoding);
	// that is, the metadata keys the pages use.
	AllowedHeaders []string `yaml:"allowed_headers"`
	// ExposedHeaders lists response metadata keys a page may read besides
	// grpc-status, grpc-message and grpc-status-details-bin.
	ExposedHeaders []string `yaml:"exposed_headers"`
	// MaxAge is how long a browser may cache a preflight answer.
	MaxAge time.Duration `yaml:"max_age" min:"0s" max:"24h"`
}

// Validate checks that origins are "*" or scheme://host[:port] and that
// header names are tokens.
func (c *CORSConfig) Validate() error {
	var errs []error
	for i, o := range c.AllowedOrigins {
		if o == "*" {
			continue
		}
		scheme, host, ok := strings.Cut(o, "://")
		if !ok || scheme == "" || host == "" || strings.ContainsAny(host, "/?#* ") {
			errs = append(errs, fmt.Errorf("allowed_origins[%d]: %q is not an origin like \"https://app.example.com\" or \"*\"", i, o))
		}
	}
	for _, list := range []struct {
		key   string
		names []string
	}{{"allowed_headers", c.AllowedHeaders}, {"exposed_headers", c.ExposedHeaders}} {
		for i, h := range list.names {
			if !validKey(strings.ToLower(h)) {
				errs = append(errs, fmt.Errorf("%s[%d]: %q is not a header name", list.key, i, h))
			}
		}
	}
	return errors.Join(errs...)
}

// DefaultConfig returns the defaults: no cross-origin access, idle
// connections kept open.
func DefaultConfig() Config {
	return Config{CORS: CORSConfig{MaxAge: 10 * time.Minute}}
}

// ErrClientSide is returned by NewSession: Axon clients speak the native
// protocol; call an Axon server over gRPC with a gRPC client.
var ErrClientSide = errors.New("protocol.grpc: client side not supported; use a gRPC client")

// Protocol is the gRPC protocol's instance for one generation. It is safe
// for concurrent use.
type Protocol struct {
	name string // "grpc" or "grpc-web"
	cfg  Config
	// yield is set on "grpc" built for a listener that also serves
	// "grpc-web": it claims no connection, so that grpc-web serves them all
	// with its options (its CORS applies to browsers over HTTP/2 too).
	yield bool
}

// New returns the protocol named name ("grpc" or "grpc-web") with cfg.
func New(name string, cfg Config) *Protocol {
	cfg.CORS.AllowedHeaders = canonicalAll(cfg.CORS.AllowedHeaders)
	cfg.CORS.ExposedHeaders = canonicalAll(cfg.CORS.ExposedHeaders)
	return &Protocol{name: name, cfg: cfg}
}

func canonicalAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = textproto.CanonicalMIMEHeaderKey(n)
	}
	return out
}

// NewServer implements kernel.Protocol: an HTTP server (HTTP/1.1 and h2c;
// HTTP/1.1 and HTTP/2 on a *tls.Conn)
// dispatching gRPC and gRPC-Web calls to d, with d's limits.
func (p *Protocol) NewServer(d *kernel.Dispatcher) kernel.ServerConn {
	return newServer(d, p.cfg, p.name)
}

// NewSession implements kernel.Protocol. It always fails with
// ErrClientSide.
func (p *Protocol) NewSession(conn net.Conn, _ kernel.SessionOptions) (kernel.Session, error) {
	conn.Close()
	return nil, ErrClientSide
}

// Match implements kernel.Matcher, for listeners shared with other
// protocols: "grpc" claims connections that open with the HTTP/2 preface;
// "grpc-web" claims those and HTTP/1.x requests of any standard method (the
// ones gRPC-Web does not use are answered 405). Listed together, grpc-web
// claims everything and grpc nothing: both serve both kinds of call, and
// grpc-web's options (its CORS) must hold for every browser, which reaches
// a TLS listener over HTTP/2.
func (p *Protocol) Match(prefix []byte) kernel.Match {
	if p.yield {
		return kernel.MatchNo
	}
	m := kernel.MatchPrefix(prefix, kernel.HTTP2Preface)
	if p.name == "grpc" || m == kernel.MatchYes {
		return m
	}
	return max(m, kernel.MatchHTTP1(prefix))
}

// ALPN implements kernel.ALPNer, for TLS listeners shared with other
// protocols: "grpc" answers to "h2" (gRPC runs over HTTP/2 only);
// "grpc-web" to "h2" and "http/1.1". As with Match, when both are listed
// grpc-web answers to both and grpc to none.
func (p *Protocol) ALPN() []string {
	if p.yield {
		return nil
	}
	if p.name == "grpc" {
		return []string{"h2"}
	}
	return []string{"h2", "http/1.1"}
}

var (
	_ kernel.Matcher = (*Protocol)(nil)
	_ kernel.ALPNer  = (*Protocol)(nil)
)

// Factory builds the protocol named "grpc". On a listener that also serves
// "grpc-web", grpc-web serves every connection with its own options, so
// options given to grpc there are refused rather than silently unused.
var Factory kernel.Factory = grpcFactory{}

type grpcFactory struct{}

var plainFactory = kernel.NewFactory(kernel.KindProtocol, "grpc", DefaultConfig,
	func(_ kernel.BuildContext, cfg Config) (kernel.Protocol, error) { return New("grpc", cfg), nil })

func (grpcFactory) Kind() kernel.Kind { return kernel.KindProtocol }
func (grpcFactory) Name() string      { return "grpc" }

func (grpcFactory) Build(bc kernel.BuildContext, opts config.Raw) (any, error) {
	if !slices.Contains(bc.Protocols, "grpc-web") {
		return plainFactory.Build(bc, opts)
	}
	if !opts.IsZero() {
		return nil, fmt.Errorf("config: %s: unused: on a listener that also serves grpc-web, grpc-web serves every gRPC and gRPC-Web connection with its own options; move them under protocol_options.grpc-web", opts.Path)
	}
	p := New("grpc", DefaultConfig())
	p.yield = true
	return kernel.Protocol(p), nil
}

// WebFactory builds the protocol named "grpc-web".
var WebFactory = kernel.NewFactory(kernel.KindProtocol, "grpc-web", DefaultConfig,
	func(_ kernel.BuildContext, cfg Config) (kernel.Protocol, error) { return New("grpc-web", cfg), nil })

// Module contributes the "grpc" and "grpc-web" protocols to an Axon
// application.
var Module = fx.Module("protocol.grpc", kernel.ProvideFactory(Factory), kernel.ProvideFactory(WebFactory))
