package kernel

import (
	"context"
	"net"
	"strings"
)

// Transport listens and dials for one address family. It is built per
// generation from its listener's options and must be safe for concurrent use.
// Listeners and connections it returns are owned by the caller.
type Transport interface {
	// Listen opens a listener on address (the part after "scheme://").
	Listen(ctx context.Context, address string) (net.Listener, error)
	// Dial connects to address, giving up when ctx is done.
	Dial(ctx context.Context, address string) (net.Conn, error)
}

// Schemer is implemented by a transport whose endpoint addresses use a URL
// scheme other than its plugin name, such as "unix" for the uds transport.
type Schemer interface {
	Scheme() string
}

// schemeOf returns the URL scheme of endpoints served by tr, which the
// catalog knows as name.
func schemeOf(name string, tr Transport) string {
	if s, ok := tr.(Schemer); ok {
		return s.Scheme()
	}
	return name
}

// Protocol frames and dispatches calls on connections. An instance is built
// per generation; it must be safe for concurrent use.
type Protocol interface {
	// NewServer returns the server side of the protocol, dispatching calls
	// to d.
	NewServer(d *Dispatcher) ServerConn
	// NewSession starts the client side of the protocol on conn and takes
	// ownership of it.
	NewSession(conn net.Conn, opts SessionOptions) (Session, error)
}

// ServerConn serves one protocol on accepted connections.
type ServerConn interface {
	// ServeConn serves conn until the peer closes it, a protocol error or
	// Shutdown closes it. It takes ownership of conn, blocks, and is called
	// concurrently for different connections.
	ServeConn(conn net.Conn)
	// Shutdown refuses new calls on every connection (telling the peers to
	// go away), waits for calls in flight until they finish or ctx is done,
	// then closes the connections. Calls to ServeConn after Shutdown close
	// their connection at once.
	Shutdown(ctx context.Context) error
}

// SessionOptions configure the client side of a connection.
type SessionOptions struct {
	Limits Limits
	// Endpoint is the address the session is connected to, for errors.
	Endpoint string
}

// Session is the client side of one protocol connection. It multiplexes any
// number of concurrent calls and is safe for concurrent use.
type Session interface {
	// Invoke sends a unary call and waits for its result, or until ctx is
	// done. The codec marshals req and unmarshals the response into resp.
	// A call the server refused before running it returns an error for
	// which status.IsRefused is true.
	Invoke(ctx context.Context, call *ClientCall, req, resp any) error
	// NewStream opens a streaming call. The stream lives until the call
	// ends or ctx is done; cancelling ctx cancels the call on the server.
	// A call the server refused before running it fails with an error for
	// which status.IsRefused is true, from NewStream or the first RecvMsg.
	NewStream(ctx context.Context, call *ClientCall) (ClientStream, error)
	// Accepting reports whether the session takes new calls; it turns false
	// once the server says go away or the connection fails.
	Accepting() bool
	// InFlight returns the number of calls in progress.
	InFlight() int
	// Done is closed when the connection has closed.
	Done() <-chan struct{}
	// Drain stops the session taking new calls (they are refused, so the
	// client sends them elsewhere) and closes it once the calls in flight
	// have ended.
	Drain()
	// Close closes the connection, failing calls in flight with UNAVAILABLE.
	Close() error
}

// Codec marshals and unmarshals messages for one content subtype. Instances
// are safe for concurrent use.
type Codec interface {
	// Name is the content subtype, such as "proto".
	Name() string
	// Marshal appends the encoding of v to dst and returns the extended
	// slice. It does not retain dst.
	Marshal(dst []byte, v any) ([]byte, error)
	// Unmarshal decodes src into v. It does not retain src: the caller may
	// reuse src once Unmarshal returns.
	Unmarshal(src []byte, v any) error
}

// Endpoint is one reachable instance of a service.
type Endpoint struct {
	// Address names the transport and address, as "tcp://127.0.0.1:7443".
	// An address without a scheme means tcp.
	Address string `yaml:"address"`
	// Labels carry routing attributes such as version or zone.
	Labels map[string]string `yaml:"labels"`
	// Weight is the relative share of traffic; zero means 1.
	Weight int `yaml:"weight"`
}

// SplitAddress returns the transport name and the transport-specific address
// of an endpoint address: "unix:///run/a.sock" gives "unix", "/run/a.sock";
// "127.0.0.1:7443" gives "tcp", "127.0.0.1:7443".
func SplitAddress(addr string) (transport, address string) {
	if i := strings.Index(addr, "://"); i > 0 {
		return addr[:i], addr[i+3:]
	}
	return "tcp", addr
}

// Resolver finds the endpoints of a service. It is safe for concurrent use.
type Resolver interface {
	// Resolve returns the current endpoints of service. An unknown service
	// is an error naming it.
	Resolve(ctx context.Context, service string) ([]Endpoint, error)
}

// Watcher is implemented by a resolver that reports changes as they happen.
// A client whose resolver is a Watcher follows the updates instead of
// resolving again every few seconds.
type Watcher interface {
	// Watch calls update with the endpoints of service now and whenever
	// they change, until ctx is done. update is never called concurrently.
	Watch(ctx context.Context, service string, update func([]Endpoint)) error
}

// Registry is a Resolver that servers can also publish themselves to.
type Registry interface {
	Resolver
	// Register publishes endpoints of service; Deregister withdraws them.
	Register(ctx context.Context, service string, eps []Endpoint) error
	Deregister(ctx context.Context, service string, eps []Endpoint) error
}
