// Package transporttest is a conformance suite for Axon transports, including
// third-party ones. A transport's test calls Run with a Harness; the suite
// checks the transport's net.Listener and net.Conn semantics directly, then
// runs the native Axon protocol over it end to end: through kernel.Client
// (concurrency, message size limits, deadlines, cancellation, the server
// going away abruptly or draining) and through a raw-byte peer that dials
// with the transport and writes frames by hand (bad prefaces, truncated
// frames, stream limits, panicking handlers).
//
// A test of a transport looks like:
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, transporttest.Harness{
//			Transport: mytransport.New(mytransport.DefaultConfig()),
//			Address:   func(testing.TB) string { return "127.0.0.1:0" },
//			Protocol:  native.New(native.DefaultConfig()),
//			Codec:     protocodec.Codec{},
//		})
//	}
//
// Every wait in the suite is bounded; no subtest depends on how fast the
// machine is. A transport may hold back a connection from Accept until the
// client's first bytes arrive (QUIC opens a stream only then): the suite's
// clients always write first, as the native protocol does.
package transporttest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
)

// timeout bounds every single wait of the suite.
const timeout = 20 * time.Second

// Harness describes the transport under test.
type Harness struct {
	// Transport listens, and dials unless ClientTransport is set.
	Transport kernel.Transport
	// ClientTransport dials; nil means Transport. Set it when the two sides
	// need different configurations (such as TLS material).
	ClientTransport kernel.Transport
	// Address returns a fresh address to listen on: "127.0.0.1:0", or a new
	// socket path. It is called once per listener.
	Address func(t testing.TB) string
	// Scheme is the endpoint scheme clients dial through, as in
	// "scheme://address". Empty means the transport's scheme if it is a
	// kernel.Schemer ("unix" for UDS), else "tcp".
	Scheme string
	// Protocol is the native Axon protocol (plugins/protocol-axon), passed
	// in because the kernel imports no plugin. The raw-byte subtests speak
	// its wire format, version 1.
	Protocol kernel.Protocol
	// Codec is the Protocol Buffers codec (plugins/codec-proto): the suite's
	// messages are google.golang.org/protobuf's wrapperspb types.
	Codec kernel.Codec
}

// Run runs the conformance suite against h as subtests of t.
func Run(t *testing.T, h Harness) {
	if h.Transport == nil || h.Address == nil || h.Protocol == nil || h.Codec == nil {
		t.Fatal("transporttest: Harness needs Transport, Address, Protocol and Codec")
	}
	if h.ClientTransport == nil {
		h.ClientTransport = h.Transport
	}
	if h.Scheme == "" {
		h.Scheme = "tcp"
		if s, ok := h.Transport.(kernel.Schemer); ok {
			h.Scheme = s.Scheme()
		}
	}
	groups := []struct {
		name  string
		tests []subtest
	}{
		{"net", netTests},
		{"call", callTests},
		{"raw", rawTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, st := range g.tests {
				t.Run(st.name, func(t *testing.T) { st.run(t, &h) })
			}
		})
	}
}

type subtest struct {
	name string
	run  func(t *testing.T, h *Harness)
}

// limits are the server's limits unless a subtest says otherwise: small
// messages so that the size subtests stay cheap, and a short handshake
// timeout so that a silent peer is dropped soon.
func limits() kernel.Limits {
	return kernel.Limits{MaxMessage: 64 << 10, HandshakeTimeout: 2 * time.Second}.WithDefaults()
}

// ctx returns a context that ends after the suite's timeout.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return c
}

// listen opens a listener on a fresh address, closed when the test ends.
func (h *Harness) listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := h.Transport.Listen(ctx(t), h.Address(t))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dial connects to addr with the client transport; the connection closes
// when the test ends and every read and write is bounded by the timeout.
func (h *Harness) dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := h.ClientTransport.Dial(ctx(t), addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(timeout))
	t.Cleanup(func() { c.Close() })
	return c
}

// fixture is a server of the test service on one listener of the
// transport. Like the kernel runtime, it hands each accepted connection to
// the current ServerConn; swap installs a new one (a new generation).
type fixture struct {
	t      *testing.T
	h      *Harness
	svc    *service
	disp   *kernel.Dispatcher
	ln     net.Listener
	addr   string // the listener's address
	target string // scheme://addr

	cur     atomic.Pointer[serverBox]
	mu      sync.Mutex
	servers []kernel.ServerConn
	conns   []net.Conn
	serving sync.WaitGroup // the accept loop and every ServeConn
}

type serverBox struct{ s kernel.ServerConn }

// serve starts a fixture with lim as the server's limits; it is torn down
// when the test ends, and the test fails if a ServeConn outlives its
// connection.
func (h *Harness) serve(t *testing.T, lim kernel.Limits) *fixture {
	t.Helper()
	svc := newService()
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc.desc()})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, h: h, svc: svc, disp: kernel.NewDispatcher(table, nil, []kernel.Codec{h.Codec}, lim, slog.New(slog.DiscardHandler))}
	f.swap()
	f.ln = h.listen(t)
	f.addr = f.ln.Addr().String()
	f.target = h.Scheme + "://" + f.addr
	f.serving.Add(1)
	go f.accept()
	t.Cleanup(f.stop)
	return f
}

// swap starts a new ServerConn for new connections and returns the one it
// replaced.
func (f *fixture) swap() kernel.ServerConn {
	s := f.h.Protocol.NewServer(f.disp)
	f.mu.Lock()
	f.servers = append(f.servers, s)
	f.mu.Unlock()
	old := f.cur.Swap(&serverBox{s})
	if old == nil {
		return nil
	}
	return old.s
}

func (f *fixture) accept() {
	defer f.serving.Done()
	var delay time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transport may report a failed handshake; it must not
			// stop the listener.
			f.t.Logf("accept: %v", err)
			delay = min(max(2*delay, time.Millisecond), 100*time.Millisecond)
			time.Sleep(delay)
			continue
		}
		delay = 0
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		s := f.cur.Load().s
		f.serving.Add(1)
		go func() {
			defer f.serving.Done()
			s.ServeConn(c)
		}()
	}
}

// kill closes the listener and, abruptly and without a go-away, every
// connection it accepted: the server is gone.
func (f *fixture) kill() {
	f.ln.Close()
	f.mu.Lock()
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (f *fixture) stop() {
	f.svc.stop()
	f.ln.Close()
	c, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	f.mu.Lock()
	servers := f.servers
	f.mu.Unlock()
	for _, s := range servers {
		if err := s.Shutdown(c); err != nil {
			f.t.Logf("shutdown: %v", err)
		}
	}
	f.kill()
	done := make(chan struct{})
	go func() { f.serving.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		f.t.Errorf("the accept loop or a ServeConn still runs %v after the listener and its connections were closed: does the transport's Close unblock Accept and Read?", timeout)
	}
}

// client returns a kernel client of the fixture with conns connections,
// closed when the test ends.
func (f *fixture) client(t testing.TB, conns int) *kernel.Client {
	t.Helper()
	c, err := kernel.NewClient(kernel.ClientOptions{
		Target:           f.target,
		Transports:       map[string]kernel.Transport{f.h.Scheme: f.h.ClientTransport},
		Protocol:         f.h.Protocol,
		Codec:            f.h.Codec,
		ConnsPerEndpoint: conns,
		DialTimeout:      3 * time.Second,
		Limits:           limits(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recv waits for a value on ch, failing the test after the timeout.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
		panic("unreachable")
	}
}

// short abbreviates long payloads in failure messages.
func short(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q... (%d bytes)", s[:20], len(s))
	}
	return fmt.Sprintf("%q", s)
}
