package quic

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/axonrpc/axon/kernel"
)

// ALPN is the application protocol the transport negotiates: the native
// Axon protocol, version 1.
const ALPN = "axon/1"

// Application error codes this transport closes QUIC connections with.
const (
	codeNoError  quic.ApplicationErrorCode = 0     // the net.Conn was closed
	codeNoStream quic.ApplicationErrorCode = 0x101 // the client opened no stream in time
	codeRefused  quic.ApplicationErrorCode = 0x102 // the listener was closing

	codeExtraStream quic.StreamErrorCode = 0x103 // a stream beyond the connection's first, reset
)

var errNoStream = errors.New("no stream opened within the handshake timeout")

// closeLinger bounds how long a closed connection waits for the peer to
// receive what was written before it (see conn.Close).
const closeLinger = 5 * time.Second

// Transport listens and dials QUIC. Each QUIC connection carries one
// bidirectional stream, which the native protocol uses as its byte stream
// (see README.md for why). It is safe for concurrent use.
type Transport struct {
	cfg      Config
	sessions tls.ClientSessionCache

	tls *kernel.TLS // the listener's or client's tls block; nil when off

	mu     sync.Mutex
	client *tls.Config // the dial side's TLS without a tls block, loaded on first use
}

// OwnTLS implements kernel.TLSTransport: QUIC's handshake is TLS, so the
// kernel hands the tls block to the transport instead of wrapping its
// connections.
func (t *Transport) OwnTLS() {}

// New returns a QUIC transport with cfg. Nothing is read or created on disk
// until the first Listen or Dial.
func New(cfg Config) *Transport {
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = kernel.DefaultLimits().HandshakeTimeout
	}
	return &Transport{cfg: cfg, sessions: tls.NewLRUClientSessionCache(64)}
}

var _ kernel.Schemer = (*Transport)(nil)

// Scheme returns "quic": endpoints of this transport are written
// "quic://127.0.0.1:7443".
func (t *Transport) Scheme() string { return "quic" }

func (t *Transport) quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  t.cfg.HandshakeTimeout,
		MaxIdleTimeout:        t.cfg.IdleTimeout,
		KeepAlivePeriod:       t.cfg.KeepAlive,
		MaxIncomingStreams:    int64(t.cfg.MaxIncomingStreams),
		MaxIncomingUniStreams: -1,
		Allow0RTT:             t.cfg.Allow0RTT,
	}
}

// Listen implements kernel.Transport. address is "host:port" for UDP. The
// returned listener's Accept returns a connection once its TLS handshake is
// done and the client has opened its stream; a client that opens none
// within the handshake timeout is disconnected without reaching Accept.
// Closing the listener leaves accepted connections open; its UDP socket
// closes when the last of them does.
func (t *Transport) Listen(ctx context.Context, address string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("transport.quic: listen %s: %w", address, err)
	}
	tlsConf, err := t.serverTLS(host)
	if err != nil {
		return nil, fmt.Errorf("transport.quic: listen %s: %w", address, err)
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", address)
	if err != nil {
		return nil, fmt.Errorf("transport.quic: %w", err)
	}
	tr := &quic.Transport{Conn: pc}
	var ql acceptor
	if t.cfg.Allow0RTT {
		ql, err = tr.ListenEarly(tlsConf, t.quicConfig())
	} else {
		ql, err = tr.Listen(tlsConf, t.quicConfig())
	}
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, fmt.Errorf("transport.quic: listen %s: %w", address, err)
	}
	l := &listener{ql: ql, tr: tr, pc: pc, handshake: t.cfg.HandshakeTimeout,
		ready: make(chan net.Conn), loopDone: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.acceptLoop()
	return l, nil
}

// Dial implements kernel.Transport: it completes the QUIC handshake (or,
// with allow_0rtt and a resumable session, starts it) and opens the
// connection's stream, giving up when ctx is done.
func (t *Transport) Dial(ctx context.Context, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("transport.quic: dial %s: %w", address, err)
	}
	tlsConf, err := t.clientTLS(host, address)
	if err != nil {
		return nil, fmt.Errorf("transport.quic: dial %s: %w", address, err)
	}
	var qc *quic.Conn
	if t.cfg.Allow0RTT {
		qc, err = quic.DialAddrEarly(ctx, address, tlsConf, t.quicConfig())
	} else {
		qc, err = quic.DialAddr(ctx, address, tlsConf, t.quicConfig())
	}
	if err != nil {
		return nil, fmt.Errorf("transport.quic: dial %s: %w", address, err)
	}
	st, err := qc.OpenStreamSync(ctx)
	if errors.Is(err, quic.Err0RTTRejected) {
		// Rejected before anything was written: just go on without 0-RTT.
		if qc, err = qc.NextConnection(ctx); err == nil {
			st, err = qc.OpenStreamSync(ctx)
		}
	}
	if err != nil {
		qc.CloseWithError(codeNoError, "")
		return nil, fmt.Errorf("transport.quic: dial %s: open stream: %w", address, err)
	}
	if t.cfg.Allow0RTT {
		return newEarlyConn(qc, st, t.cfg.HandshakeTimeout), nil
	}
	return newConn(qc, st), nil
}

// acceptor is what quic.Listener and quic.EarlyListener have in common.
type acceptor interface {
	Accept(context.Context) (*quic.Conn, error)
	Close() error
	Addr() net.Addr
}

// listener accepts QUIC connections and hands out their first stream.
type listener struct {
	ql        acceptor
	tr        *quic.Transport
	pc        net.PacketConn
	handshake time.Duration

	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	ready    chan net.Conn
	loopDone chan struct{}

	closeOnce, releaseOnce sync.Once
	mu                     sync.Mutex
	live                   int // accepted QUIC connections not yet closed
	closed                 bool
}

// acceptLoop accepts QUIC connections; each waits for its stream in its own
// goroutine, so a slow or silent client cannot hold up the others.
func (l *listener) acceptLoop() {
	defer close(l.loopDone)
	for {
		qc, err := l.ql.Accept(context.Background())
		if err != nil {
			return // the listener or its transport closed
		}
		l.mu.Lock()
		refuse := l.closed
		if !refuse {
			l.live++
		}
		l.mu.Unlock()
		if refuse {
			qc.CloseWithError(codeRefused, "server is closing")
			continue
		}
		go l.serve(qc)
	}
}

// serve waits for qc's first stream, hands it to Accept, and then refuses
// any further stream the client opens (the native protocol needs one) until
// qc closes, keeping count of qc meanwhile.
func (l *listener) serve(qc *quic.Conn) {
	defer l.done()
	ctx, cancel := context.WithTimeout(l.ctx, l.handshake)
	st, err := qc.AcceptStream(ctx)
	cancel()
	if err != nil {
		if l.ctx.Err() != nil {
			qc.CloseWithError(codeRefused, "server is closing")
		} else {
			qc.CloseWithError(codeNoStream, errNoStream.Error())
		}
		return
	}
	c := newConn(qc, st)
	select {
	case l.ready <- c:
	case <-l.ctx.Done():
		qc.CloseWithError(codeRefused, "server is closing")
		return
	}
	for {
		extra, err := qc.AcceptStream(context.Background())
		if err != nil {
			return // qc closed
		}
		extra.CancelRead(codeExtraStream)
		extra.CancelWrite(codeExtraStream)
	}
}

// done counts a connection out; the last one out of a closed listener
// closes the UDP socket.
func (l *listener) done() {
	l.mu.Lock()
	l.live--
	last := l.closed && l.live == 0
	l.mu.Unlock()
	if last {
		l.release()
	}
}

func (l *listener) release() {
	l.releaseOnce.Do(func() {
		l.tr.Close()
		l.pc.Close()
	})
}

// Accept implements net.Listener. After Close it returns an error that is
// net.ErrClosed.
func (l *listener) Accept() (net.Conn, error) {
	if l.ctx.Err() == nil {
		select {
		case c := <-l.ready:
			return c, nil
		case <-l.ctx.Done():
		}
	}
	return nil, fmt.Errorf("transport.quic: accept on %s: %w", l.Addr(), net.ErrClosed)
}

// Close implements net.Listener: it stops accepting and refuses handshakes
// in progress; accepted connections go on.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.cancel()
		l.ql.Close()
		<-l.loopDone
		l.mu.Lock()
		idle := l.live == 0
		l.mu.Unlock()
		if idle {
			l.release()
		}
	})
	return nil
}

// Addr implements net.Listener.
func (l *listener) Addr() net.Addr { return l.ql.Addr() }

// conn is a QUIC connection's stream as a net.Conn.
//
// A connection dialed with 0-RTT starts before the server has confirmed
// anything; if the server then rejects the early data (it cannot decrypt
// the session ticket, for example after a restart), quic-go fails the
// stream with quic.Err0RTTRejected. conn hides that: it keeps what was
// written until the handshake completes and, on rejection, opens a new
// stream on the now established connection and writes it again. Nothing
// of the rejected data reached the application on the other side, so the
// replay cannot duplicate it.
type conn struct {
	qc *quic.Conn
	st atomic.Pointer[quic.Stream]

	once     sync.Once
	closed   atomic.Bool // Close was called
	peerDone atomic.Bool // the peer finished: its FIN was read, or it closed the connection

	settled atomic.Bool // no 0-RTT rejection can happen any more
	emu     sync.Mutex  // guards what follows, used until settled
	replay  []byte      // bytes written before settling
	redone  bool        // recover ran
	redoErr error       // and failed
	rdl     time.Time   // the deadlines, for a replacement stream
	wdl     time.Time
}

func newConn(qc *quic.Conn, st *quic.Stream) *conn {
	c := &conn{qc: qc}
	c.st.Store(st)
	c.settled.Store(true)
	return c
}

// newEarlyConn wraps a stream opened on a connection dialed with 0-RTT.
// Until the handshake completes, what is written is kept; then the early
// data was either accepted (or never sent), and the copy is dropped, or
// rejected, and the stream is replaced.
func newEarlyConn(qc *quic.Conn, st *quic.Stream, handshake time.Duration) *conn {
	c := &conn{qc: qc}
	c.st.Store(st)
	go func() {
		select {
		case <-qc.HandshakeComplete():
		case <-qc.Context().Done():
			return
		}
		// quic-go fails the streams of rejected 0-RTT before it reports
		// the handshake complete; an empty write shows it without sending
		// anything.
		if qc.ConnectionState().Used0RTT {
			c.settle()
		} else if _, err := st.Write(nil); errors.Is(err, quic.Err0RTTRejected) {
			c.recover(handshake)
		} else {
			c.settle()
		}
	}()
	return c
}

func (c *conn) settle() {
	c.emu.Lock()
	c.settled.Store(true)
	c.replay = nil
	c.emu.Unlock()
}

// recover replaces a stream whose 0-RTT data the server rejected, once.
func (c *conn) recover(handshake time.Duration) error {
	c.emu.Lock()
	defer c.emu.Unlock()
	if c.redone || c.settled.Load() {
		return c.redoErr
	}
	c.redone = true
	ctx, cancel := context.WithTimeout(context.Background(), handshake)
	defer cancel()
	qc, err := c.qc.NextConnection(ctx)
	var st *quic.Stream
	if err == nil {
		st, err = qc.OpenStreamSync(ctx)
	}
	if err == nil && c.closed.Load() {
		err = net.ErrClosed
	}
	if err == nil {
		st.SetReadDeadline(c.rdl)
		st.SetWriteDeadline(c.wdl)
		_, err = st.Write(c.replay)
	}
	if err != nil {
		c.redoErr = fmt.Errorf("transport.quic: the server rejected 0-RTT data and resending it failed: %w", err)
		c.qc.CloseWithError(codeNoError, "")
		return c.redoErr
	}
	c.replay = nil
	c.st.Store(st)
	c.settled.Store(true)
	return nil
}

// Read implements net.Conn. The peer's end of the stream, or its closing
// the connection with code 0, reads as io.EOF; a read after Close returns
// net.ErrClosed.
func (c *conn) Read(p []byte) (int, error) {
	st := c.st.Load()
	n, err := st.Read(p)
	if err != nil && errors.Is(err, quic.Err0RTTRejected) {
		if rerr := c.recover(closeLinger); rerr != nil {
			err = rerr
		} else if c.st.Load() != st {
			return c.Read(p)
		}
	}
	if err != nil {
		err = c.readErr(err)
	}
	return n, err
}

func (c *conn) readErr(err error) error {
	if errors.Is(err, io.EOF) {
		c.peerDone.Store(true)
		return io.EOF
	}
	if c.closed.Load() {
		return net.ErrClosed
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote && ae.ErrorCode == codeNoError {
		c.peerDone.Store(true)
		return io.EOF
	}
	return err
}

// Write implements net.Conn.
func (c *conn) Write(p []byte) (int, error) {
	kept := false
	if !c.settled.Load() {
		c.emu.Lock()
		if kept = !c.settled.Load(); kept {
			c.replay = append(c.replay, p...)
		}
		c.emu.Unlock()
	}
	st := c.st.Load()
	n, err := st.Write(p)
	if err != nil && errors.Is(err, quic.Err0RTTRejected) {
		// p was kept, and recover writes it on the new stream.
		if rerr := c.recover(closeLinger); rerr != nil {
			err = rerr
		} else if kept && c.st.Load() != st {
			return len(p), nil
		}
	}
	if err != nil && c.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

// Close implements net.Conn: it stops reading, ends the stream after what
// was written, and closes the QUIC connection with application error code
// 0. Closing the connection at once would discard written data the peer
// has not received yet (a QUIC close, unlike a TCP FIN, is not queued
// behind the data), so unless the peer has already finished, the
// connection closes when the peer, having read the end of the stream,
// closes its side, or after closeLinger. Close does not block.
func (c *conn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		st := c.st.Load()
		st.CancelRead(0)
		st.Close()
		if c.peerDone.Load() {
			go c.qc.CloseWithError(codeNoError, "")
			return
		}
		go func() {
			t := time.NewTimer(closeLinger)
			defer t.Stop()
			select {
			case <-c.qc.Context().Done():
			case <-t.C:
			}
			c.qc.CloseWithError(codeNoError, "")
		}()
	})
	return nil
}

// LocalAddr implements net.Conn: the QUIC connection's local UDP address.
func (c *conn) LocalAddr() net.Addr { return c.qc.LocalAddr() }

// RemoteAddr implements net.Conn: the QUIC connection's remote UDP address.
func (c *conn) RemoteAddr() net.Addr { return c.qc.RemoteAddr() }

// SetDeadline implements net.Conn on the stream.
func (c *conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline implements net.Conn on the stream.
func (c *conn) SetReadDeadline(t time.Time) error {
	if !c.settled.Load() {
		c.emu.Lock()
		c.rdl = t
		c.emu.Unlock()
	}
	return c.st.Load().SetReadDeadline(t)
}

// SetWriteDeadline implements net.Conn on the stream.
func (c *conn) SetWriteDeadline(t time.Time) error {
	if !c.settled.Load() {
		c.emu.Lock()
		c.wdl = t
		c.emu.Unlock()
	}
	return c.st.Load().SetWriteDeadline(t)
}

// ConnectionState returns the TLS state of the QUIC connection, for peer
// identity and introspection.
func (c *conn) ConnectionState() tls.ConnectionState { return c.qc.ConnectionState().TLS }
