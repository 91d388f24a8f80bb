// Package impl holds the echo implementations compared by cmd/echobench.
//
// Every implementation serves a unary echo (the response carries the request
// payload back unchanged) and provides a client that callers share. Add one by
// writing a type that satisfies Impl and listing it in registry below.
package impl

import (
	"bytes"
	"context"
	"fmt"
)

// Impl is one RPC stack under test.
type Impl interface {
	// Name is the identifier used by -impls and in the report.
	Name() string
	// Serve starts an echo server listening on addr (for example
	// "127.0.0.1:0"). It returns once the server accepts connections. An
	// impl whose transport has no host:port (axon-uds) listens somewhere of
	// its own choosing instead; Server.Addr says where.
	Serve(addr string) (Server, error)
	// Dial connects a client to the server at addr. The client is shared by
	// callers goroutines, each with at most one call in flight, so an
	// implementation may size connection pools by it.
	Dial(addr string, callers int) (Client, error)
}

// Server is a running echo server.
type Server interface {
	// Addr is the address clients dial (the resolved port when Serve was
	// given port 0; a socket path for axon-uds).
	Addr() string
	// Close stops the server and closes its connections.
	Close() error
}

// Client is safe for concurrent use by the number of callers passed to Dial.
type Client interface {
	// Call sends payload as one unary echo request and waits for the
	// response. It returns an error if the call fails, ctx ends first, or the
	// response differs from payload. Call must not modify payload, which is
	// shared read-only by all callers.
	Call(ctx context.Context, payload []byte) error
	// Close releases the client's connections; calls in flight fail.
	Close() error
}

// registry lists every implementation, in report order.
//
// Axon echoes wrapperspb.BytesValue through the proto codec, like the grpc
// impl, so that the comparison with grpc is like-for-like; its first three
// entries differ only in the transport. axon-tls, grpc-tls and
// raw-pingpong-tls are axon, grpc and raw-pingpong with mutual TLS over the
// same certificates.
var registry = []Impl{
	Axon{Transport: "tcp"},
	Axon{Transport: "uds"},
	Axon{Transport: "quic"},
	RawMux{},
	RawPingPong{},
	RawPingPong{TLS: true},
	NetRPC{},
	AxonGRPC{},
	GRPC{},
	Axon{Transport: "tcp", TLS: true},
	GRPC{TLS: true},
}

// All returns every registered implementation in report order.
func All() []Impl {
	return append([]Impl(nil), registry...)
}

// Lookup finds a registered implementation by name.
func Lookup(name string) (Impl, bool) {
	for _, im := range registry {
		if im.Name() == name {
			return im, true
		}
	}
	return nil, false
}

// verify checks an echo response against the request.
func verify(got, want []byte) error {
	if !bytes.Equal(got, want) {
		return fmt.Errorf("echo mismatch: got %d bytes, want %d bytes", len(got), len(want))
	}
	return nil
}
