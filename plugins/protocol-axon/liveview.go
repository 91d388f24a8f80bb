package native

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/axonrpc/axon/kernel"
)

// The server's part of the kernel's live view (kernel.ConnReporter). Each
// serverConn counts its calls and bytes in a kernel.ConnStats, with atomics:
// Begin when a call is handed to the dispatcher, End with the status it
// ended with; Finish for a call refused before (stream limit, going away,
// unknown method or codec, schema mismatch, an undecodable request); bytes
// where they cross the connection (below the reader's bufio, and per batch
// the writer writes). Conns reads them without a lock that a call takes.

var _ kernel.ConnReporter = (*server)(nil)

// Conns implements kernel.ConnReporter: one view per open connection (from
// the end of its handshake until ServeConn returns).
func (s *server) Conns() []kernel.ConnView {
	s.mu.Lock()
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	views := make([]kernel.ConnView, 0, len(conns))
	for _, c := range conns {
		views = append(views, c.view())
	}
	return views
}

func (c *serverConn) view() kernel.ConnView {
	v := kernel.ConnView{Protocol: "axon", Local: kernel.AddrString(c.conn.LocalAddr()), Remote: kernel.AddrString(c.conn.RemoteAddr())}
	if t := c.tls.Load(); t != nil {
		v.TLSVersion, v.PeerIdentity = t.Version, t.Peer
	}
	return c.stats.View(v)
}

// learnTLS records the connection's TLS version and peer identity, if it is
// a TLS connection (or wraps one, as the kernel's sniffer's connections
// do). A *tls.Conn has finished its handshake once the preface was read
// through it, so its state is read at once. Another carrier of TLS state
// (transport-quic's connections) may still be in a 0-RTT handshake, during
// which ConnectionState blocks: its state is read by a goroutine of its own,
// which ends with the handshake.
func (c *serverConn) learnTLS() {
	src := kernel.TLSOf(c.conn)
	if src == nil {
		return
	}
	if _, ok := src.(*tls.Conn); ok {
		cs := src.ConnectionState()
		c.tls.Store(kernel.NewTLSInfo(&cs))
		return
	}
	go func() {
		cs := src.ConnectionState()
		if info := kernel.NewTLSInfo(&cs); info != nil {
			c.tls.Store(info)
		}
	}()
}

// peerIdentity returns the verified identity of the connection's peer, ""
// without one (or while a QUIC 0-RTT handshake has not told it yet).
func (c *serverConn) peerIdentity() string {
	if t := c.tls.Load(); t != nil {
		return t.Peer
	}
	return ""
}

// countingReader counts what the connection reads, below the bufio.Reader:
// once per read system call, not per frame.
type countingReader struct {
	conn  net.Conn
	stats *kernel.ConnStats
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.conn.Read(p)
	if n > 0 {
		r.stats.Read(n, time.Now())
	}
	return n, err
}
