package grpc

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel"
)

// The server's part of the kernel's live view (kernel.ConnReporter). Every
// connection ServeConn is given gets a liveConn, registered until ServeConn
// returns (the HTTP server has closed the connection); requests reach it
// through the connection's context (http.Server.ConnContext). Each gRPC or
// gRPC-Web call counts in its ConnStats: Begin once it is dispatched, End
// with the status it sent; Finish for one answered before (unknown method,
// codec or encoding, malformed metadata or timeout, schema mismatch).
// Requests that are not gRPC calls (CORS preflights, 405, 415, 505) are not
// counted.
//
// Protocol: "grpc-web" for an HTTP/1.x connection; for an HTTP/2 one, the
// protocol of its first call ("grpc" until it has had one). What a
// connection speaks is known from its first bytes (plaintext), from ALPN
// (TLS) or else from its first call; until then it shows the protocol the
// server was built as.
//
// Bytes are counted only for connections that reach net/http as
// trackedConn, whose reads and writes pass through this package. A
// *tls.Conn must reach net/http unwrapped (see server), so a connection
// served over TLS shows 0 bytes in and out, and its last activity is when
// its last call arrived (or when it opened). A TLS connection the kernel's
// sniffer wrapped (no ALPN) reaches net/http as plaintext: its bytes are
// counted, after decryption, as the native protocol counts them.

var _ kernel.ConnReporter = (*server)(nil)

// liveConn is one connection in the live view.
type liveConn struct {
	stats  kernel.ConnStats
	local  net.Addr
	remote net.Addr
	// tc is a TLS connection whose handshake was not complete when
	// ServeConn got it: its state is read at its first call.
	tc *tls.Conn
	// uncounted is set for a connection served as a *tls.Conn, whose bytes
	// are not counted: calls mark its activity instead.
	uncounted bool
	// settled is set once proto is final and the TLS state known, so that
	// calls skip settle.
	settled atomic.Bool

	// aged is set once the connection is older than max_connection_age:
	// its calls ask the HTTP server to close it (see server.age).
	aged atomic.Bool
	// flooded is set when the connection went over its frame budget.
	flooded atomic.Bool
	// peerID is the verified identity of the peer, once a call over TLS
	// asked for it (identity).
	peerID atomic.Pointer[string]

	mu         sync.Mutex
	proto      string // "grpc" or "grpc-web"; "" until known
	protoFinal bool   // proto is decided
	tls        *kernel.TLSInfo
}

// newLiveConn returns conn's liveConn, opened now. It learns what it can of
// conn's TLS state and protocol at once: a *tls.Conn's handshake is done
// here when the kernel's sniffer did it (its ALPN tells HTTP/2 from
// HTTP/1.1), and no one else is in it yet when it is not.
func newLiveConn(conn net.Conn) *liveConn {
	lc := &liveConn{local: conn.LocalAddr(), remote: conn.RemoteAddr()}
	lc.stats.Open(time.Now())
	src := kernel.TLSOf(conn)
	if src == nil {
		return lc
	}
	tc, isTLS := src.(*tls.Conn)
	if !isTLS {
		// transport-quic's connection: its ConnectionState blocks while a
		// 0-RTT handshake goes on, so it is read off the connection's path.
		go func() {
			cs := src.ConnectionState()
			if info := kernel.NewTLSInfo(&cs); info != nil {
				lc.mu.Lock()
				lc.tls = info
				lc.mu.Unlock()
			}
		}()
		return lc
	}
	served := conn == net.Conn(tc)
	lc.uncounted = served
	cs := tc.ConnectionState()
	if !cs.HandshakeComplete {
		lc.tc = tc
		return lc
	}
	lc.tls = kernel.NewTLSInfo(&cs)
	if served {
		// Served as TLS: ALPN chose the HTTP version.
		if cs.NegotiatedProtocol == "h2" {
			lc.proto = "grpc"
		} else {
			lc.proto, lc.protoFinal = "grpc-web", true
		}
	}
	return lc
}

// arrived notes a gRPC call on the connection, made over HTTP/2 or not,
// gRPC-Web or not, before it is counted (ConnStats Begin or Finish). The
// first call settles the connection's protocol and TLS state; after that it
// is an atomic load, and on a connection whose bytes are not counted, the
// call's time as the connection's last activity.
func (lc *liveConn) arrived(h2, web bool) {
	if !lc.settled.Load() {
		lc.settle(h2, web)
	}
	if lc.uncounted {
		lc.stats.Read(0, time.Now())
	}
}

func (lc *liveConn) settle(h2, web bool) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if !lc.protoFinal {
		lc.proto, lc.protoFinal = "grpc", true
		if web || !h2 {
			lc.proto = "grpc-web"
		}
	}
	if lc.tc != nil && lc.tls == nil {
		// A request came through it: the handshake is done, and
		// ConnectionState does not wait.
		cs := lc.tc.ConnectionState()
		lc.tls = kernel.NewTLSInfo(&cs)
	}
	lc.settled.Store(lc.tc == nil || lc.tls != nil)
}

// sawFirstBytes records what the first bytes read from a plaintext
// connection tell: the HTTP/2 preface (the first call decides between gRPC
// and gRPC-Web), or HTTP/1.x (gRPC-Web).
func (lc *liveConn) sawFirstBytes(b []byte) {
	var proto string
	switch {
	case bytes.HasPrefix(b, h2Start):
		proto = "grpc"
	case bytes.HasPrefix(h2Start, b):
		return // too few bytes to tell: the first call will
	default:
		proto = "grpc-web"
	}
	lc.mu.Lock()
	if !lc.protoFinal && lc.proto == "" {
		lc.proto = proto
		lc.protoFinal = proto == "grpc-web"
	}
	lc.mu.Unlock()
}

var h2Start = []byte("PRI * HTTP/2.0")

func (lc *liveConn) view(fallback string) kernel.ConnView {
	v := kernel.ConnView{Protocol: fallback, Local: kernel.AddrString(lc.local), Remote: kernel.AddrString(lc.remote)}
	lc.mu.Lock()
	if lc.proto != "" {
		v.Protocol = lc.proto
	}
	if lc.tls != nil {
		v.TLSVersion, v.PeerIdentity = lc.tls.Version, lc.tls.Peer
	}
	lc.mu.Unlock()
	return lc.stats.View(v)
}

// Conns implements kernel.ConnReporter: one view per connection the HTTP
// server has not closed yet.
func (s *server) Conns() []kernel.ConnView {
	s.mu.Lock()
	conns := make([]*liveConn, 0, len(s.conns))
	for lc := range s.conns {
		conns = append(conns, lc)
	}
	s.mu.Unlock()
	views := make([]kernel.ConnView, 0, len(conns))
	for _, lc := range conns {
		views = append(views, lc.view(s.name))
	}
	return views
}

// register adds lc to the live view; unregister removes it.
func (s *server) register(lc *liveConn) {
	s.mu.Lock()
	s.conns[lc] = struct{}{}
	s.mu.Unlock()
}

func (s *server) unregister(lc *liveConn) {
	s.mu.Lock()
	delete(s.conns, lc)
	s.mu.Unlock()
}

// countingReader counts what a plaintext connection reads, below its
// bufio.Reader (once per read system call), and looks at its first bytes.
// Only the HTTP server's reading goroutine reads.
// It also runs the connection's HTTP/2 frame budget (frames.go): a
// connection over it reads errControlFlood from then on.
type countingReader struct {
	d     *kernel.Dispatcher // told of a connection over its frame budget
	conn  net.Conn
	lc    *liveConn
	tc    *trackedConn
	seen  bool // the first bytes were looked at
	flood bool // over the frame budget
	fs    frameScanner
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.flood {
		return 0, errControlFlood
	}
	n, err := r.conn.Read(p)
	if n > 0 {
		now := time.Now()
		r.lc.stats.Read(n, now)
		if !r.seen {
			r.seen = true
			r.lc.sawFirstBytes(p[:n])
		}
		if r.fs.state != scanOff {
			if !r.fs.scan(p[:n], now) {
				r.flood = true
				r.lc.flooded.Store(true)
				r.d.Penalize(r.conn.RemoteAddr())
				return 0, errControlFlood
			}
			if r.fs.state == scanFrames && !r.tc.h2.Load() {
				r.tc.h2.Store(true)
			}
		}
	}
	return n, err
}

// connOf returns the liveConn of the connection r arrived on.
func connOf(r *http.Request) *liveConn {
	lc, _ := r.Context().Value(connKey{}).(*liveConn)
	return lc
}

type connKey struct{}

// identity returns the verified identity of the peer of a TLS connection
// whose state is cs, computed at its first call only: a call costs no
// allocation for it.
func (lc *liveConn) identity(cs *tls.ConnectionState) string {
	if p := lc.peerID.Load(); p != nil {
		return *p
	}
	id := kernel.VerifiedIdentity(cs)
	lc.peerID.Store(&id)
	return id
}
