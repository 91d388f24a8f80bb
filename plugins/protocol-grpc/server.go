package grpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel"
)

// server is the gRPC protocol's server side for one generation.
//
// It is Go's net/http server with Protocols HTTP/1.1, unencrypted HTTP/2
// (prior knowledge, as gRPC clients speak it in cleartext) and HTTP/2 over
// TLS, not golang.org/x/net/http2: since Go 1.24 the standard server speaks
// h2c itself, so one http.Server serves gRPC, gRPC-Web over HTTP/1.1 and
// gRPC-Web over HTTP/2 on the same connections the kernel hands over; its
// Shutdown already sends HTTP/2 GOAWAY, lets calls in flight finish and
// tracks connection state, which ServerConn.Shutdown needs; and it needs no
// dependency. x/net/http2's ServeConn would fit ServeConn's one-connection
// shape, but would leave HTTP/1.1 (gRPC-Web) and draining to be done by hand.
// The kernel's connections reach http.Server.Serve through connListener;
// ServeConn returns when the server closes its connection.
//
// Under TLS the kernel hands over a *tls.Conn (its handshake done by the
// listener's sniffer, which picked this protocol by ALPN, or not yet done
// when the protocol has a listener of its own). It reaches http.Server as
// is, not wrapped: net/http takes its per-connection TLS path (handshake if
// needed, Request.TLS, and the negotiated "h2" to its HTTP/2 server through
// TLSNextProto) only for a *tls.Conn. TLSNextProto["h2"] is set up by Serve
// because Protocols includes HTTP/2; TLSConfig stays nil, since the
// handshake is the kernel's (the connection's own tls.Config negotiates
// ALPN).
type server struct {
	name string // the protocol's name, "grpc" or "grpc-web"
	d    *kernel.Dispatcher
	h    *handler
	hs   *http.Server
	ln   *connListener
	once sync.Once // starts hs.Serve on the first connection
	done chan struct{}
	// tlsClosed maps a *tls.Conn being served to its tlsServed: such a
	// connection cannot be a trackedConn.
	tlsClosed sync.Map

	mu    sync.Mutex
	conns map[*liveConn]struct{} // the connections being served (liveview.go)

	writeTimeout time.Duration // per write on a cleartext HTTP/1.x connection
	frameRate    int           // control frames per second and burst (frames.go)
	maxAge       time.Duration // max_connection_age; 0: none
}

// tlsServed is a *tls.Conn being served.
type tlsServed struct {
	closed chan struct{} // closed when the HTTP server has closed it (ConnState)
	lc     *liveConn
}

// headerSlack is what the HTTP header block may hold beyond max_metadata:
// pseudo-headers and the headers every gRPC request carries (content-type,
// te, user-agent, grpc-timeout...). Metadata above max_metadata within the
// slack is answered with RESOURCE_EXHAUSTED; a header block above both is
// refused by the HTTP layer (HTTP/2 advertises it as MAX_HEADER_LIST_SIZE).
const headerSlack = 2 << 10

func newServer(d *kernel.Dispatcher, cfg Config, name string) *server {
	lim := d.Limits()
	s := &server{name: name, d: d, ln: newConnListener(), done: make(chan struct{}), conns: make(map[*liveConn]struct{}),
		writeTimeout: lim.WriteTimeout, frameRate: lim.ControlFrameRate, maxAge: lim.MaxConnectionAge}
	s.h = &handler{d: d, cors: cfg.CORS, maxMessage: int(lim.MaxMessage), maxMetadata: int(lim.MaxMetadata), hijackClosed: s.tlsDone,
		requestTimeout: lim.RequestTimeout, writeTimeout: lim.WriteTimeout, budget: d.Budget()}
	idle := lim.IdleTimeout // server.limits.idle_timeout; the protocol's own idle_timeout wins when set
	if cfg.IdleTimeout > 0 {
		idle = cfg.IdleTimeout
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true) // h2c, prior knowledge, on plaintext connections
	protos.SetHTTP2(true)            // HTTP/2 on *tls.Conn that negotiated "h2"
	s.hs = &http.Server{
		Handler:           s.h,
		Protocols:         &protos,
		ReadHeaderTimeout: lim.HandshakeTimeout,
		IdleTimeout:       idle, // HTTP/1.1 keep-alive and HTTP/2 (GOAWAY, then close)
		MaxHeaderBytes:    int(lim.MaxMetadata) + headerSlack,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: lim.MaxConcurrentStreams,
			// Closes a connection none of whose bytes could be written for
			// this long (TLS included); cleartext HTTP/1.x has the same
			// bound in trackedConn.Write.
			WriteByteTimeout: lim.WriteTimeout,
		},
		ConnContext: s.connContext,
		ConnState:   s.connState,
		ErrorLog:    slog.NewLogLogger(loggerOf(d).Handler(), slog.LevelDebug),
	}
	return s
}

// connState tells ServeConn when the HTTP server is done with a TLS
// connection. net/http reports StateClosed once it has closed a connection,
// HTTP/2 over TLS included (its handler returns first). The one connection
// it hands over instead (StateHijacked), the handler's closeAfter reports
// itself once it has closed it.
func (s *server) connState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed {
		s.tlsDone(c)
	}
}

// tlsDone ends ServeConn for c if c is a TLS connection being served.
func (s *server) tlsDone(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		if ts, ok := s.tlsClosed.LoadAndDelete(tc); ok {
			close(ts.(*tlsServed).closed)
		}
	}
}

// connContext gives a connection's requests its liveConn (connOf), which
// also holds its peer address.
func (s *server) connContext(ctx context.Context, c net.Conn) context.Context {
	var lc *liveConn
	switch c := c.(type) {
	case *trackedConn:
		lc = c.lc
	case *tls.Conn:
		if ts, ok := s.tlsClosed.Load(c); ok {
			lc = ts.(*tlsServed).lc
		}
	}
	if lc == nil {
		// Not from ServeConn (it always is): counted, but not listed.
		lc = &liveConn{local: c.LocalAddr(), remote: c.RemoteAddr()}
	}
	return context.WithValue(ctx, connKey{}, lc)
}

func loggerOf(d *kernel.Dispatcher) *slog.Logger {
	if l := d.Logger(); l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// ServeConn implements kernel.ServerConn: it hands conn to the HTTP server
// and blocks until the server has closed it. After Shutdown it closes conn
// at once. A *tls.Conn is served over TLS: HTTP/2 when its handshake
// negotiated "h2", else HTTP/1.1.
func (s *server) ServeConn(conn net.Conn) {
	s.once.Do(func() {
		go func() {
			defer close(s.done)
			s.hs.Serve(s.ln) // returns once Shutdown or Close closes s.ln
		}()
	})
	lc := newLiveConn(conn)
	s.register(lc)
	defer s.unregister(lc) // once the HTTP server has closed conn
	if s.maxAge > 0 {
		t := time.AfterFunc(jitter(s.maxAge), func() { s.age(lc) })
		defer t.Stop()
	}
	if tc, ok := conn.(*tls.Conn); ok {
		ts := &tlsServed{closed: make(chan struct{}), lc: lc}
		s.tlsClosed.Store(tc, ts) // before the server can report it closed
		if !s.ln.push(tc) {
			s.tlsClosed.Delete(tc)
			conn.Close()
			return
		}
		<-ts.closed
		return
	}
	tc := &trackedConn{Conn: conn, lc: lc, closed: make(chan struct{}), writeTimeout: s.writeTimeout}
	cr := &countingReader{d: s.d, conn: conn, lc: lc, tc: tc}
	cr.fs.init(s.frameRate, time.Now(), &tc.written)
	tc.br = bufio.NewReaderSize(cr, readBuffer)
	if !s.ln.push(tc) {
		conn.Close()
		return
	}
	<-tc.closed
}

// jitter returns d give or take 10%, so that connections opened together
// do not all reach their age together.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// age marks a connection that reached max_connection_age. net/http has no
// per-connection shutdown, and a GOAWAY frame written from here would race
// its writer, so every call that starts on the connection from then on
// answers with "Connection: close", which net/http's HTTP/2 server turns
// into a graceful shutdown of the connection (GOAWAY, the calls in flight
// finish, then close) and its HTTP/1.1 server into closing the connection
// after the response. The connection is not closed while idle: a client
// could be sending a call as it goes (idle_timeout closes it, with GOAWAY);
// calls in flight are never cut.
func (s *server) age(lc *liveConn) {
	lc.aged.Store(true)
}

// Shutdown implements kernel.ServerConn: the HTTP server stops accepting
// connections, sends GOAWAY on HTTP/2 connections (refusing new calls),
// closes idle ones, and waits for calls in flight until ctx is done; then it
// closes every connection that is left, which cancels their calls.
func (s *server) Shutdown(ctx context.Context) error {
	err := s.hs.Shutdown(ctx)
	s.ln.Close()
	if err != nil {
		calls, conns := 0, 0
		for _, v := range s.Conns() {
			calls += v.InFlight
			conns++
		}
		s.hs.Close()
		if calls > 0 {
			err = fmt.Errorf("protocol.grpc: drain: calls still running (%d on %d connections): %w", calls, conns, err)
		} else {
			// net/http waits up to 5 s for the first request of a
			// connection that has sent none.
			err = fmt.Errorf("protocol.grpc: drain: %d connections still open with no call in flight: %w", conns, err)
		}
	}
	s.once.Do(func() { close(s.done) }) // never served: nothing to wait for
	<-s.done
	return err
}

// connListener is a net.Listener whose connections are those ServeConn is
// given.
type connListener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newConnListener() *connListener {
	return &connListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// push hands c to Accept; it reports false once the listener is closed.
func (l *connListener) push(c net.Conn) bool {
	select {
	case <-l.closed:
		return false
	default:
	}
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return listenerAddr{} }

type listenerAddr struct{}

func (listenerAddr) Network() string { return "axon" }
func (listenerAddr) String() string  { return "protocol.grpc" }

// readBuffer is the read buffer of a connection. net/http's HTTP/2 server
// reads frames straight from its connection, which costs two read system
// calls per frame in cleartext (a TLS connection buffers records itself);
// the buffer makes that about one per batch of frames.
const readBuffer = 16 << 10

// trackedConn tells ServeConn when the HTTP server has closed a connection,
// buffers its reads, and counts its bytes (below the buffer, see
// countingReader).
//
// Writes on an HTTP/1.x connection each get a deadline of writeTimeout, so
// that a peer that stops reading fails its call and gets its connection
// closed (net/http's HTTP/2 server sets the same deadline itself, see
// HTTP2Config.WriteByteTimeout; h2 is set once the reader saw the preface).
type trackedConn struct {
	net.Conn
	lc           *liveConn
	br           *bufio.Reader
	once         sync.Once
	closed       chan struct{}
	writeTimeout time.Duration
	h2           atomic.Bool   // the connection speaks HTTP/2
	written      atomic.Uint64 // bytes written so far (frames.go)
}

func (c *trackedConn) Read(p []byte) (int, error) { return c.br.Read(p) }

func (c *trackedConn) Write(p []byte) (int, error) {
	if c.writeTimeout > 0 && !c.h2.Load() {
		c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.written.Add(uint64(n))
		c.lc.stats.Wrote(n, time.Now())
	}
	return n, err
}

// CloseWrite half-closes the connection when the one underneath can.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("protocol.grpc: connection cannot half-close")
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
