package kernel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/axonrpc/axon/kernel/status"
)

type connSlot struct {
	dialing chan struct{} // a one-token lock that serialises dials; a caller waits for it only until its ctx is done
	sess    atomic.Pointer[sessionBox]
}

// sessionBox is a session and what the live view shows of it.
type sessionBox struct {
	s     Session
	stats ConnStats // opened at, finished by code (in flight is the session's)
	view  ConnView  // the fixed fields
	tls   atomic.Pointer[TLSInfo]
}

// errDialBusy says another caller is dialing the slot.
var errDialBusy = status.New(status.Unavailable, "another call is connecting")

// dial connects slot. With wait false it returns errDialBusy rather than
// wait behind another caller's dial, so the caller can try another endpoint.
func (c *Client) dial(ctx context.Context, ep *Backend, slot *connSlot, wait bool) (*sessionBox, error) {
	select {
	case slot.dialing <- struct{}{}:
	default:
		if !wait {
			return nil, errDialBusy
		}
		select {
		case slot.dialing <- struct{}{}:
		case <-ctx.Done():
			return nil, status.FromError(ctx.Err())
		}
	}
	defer func() { <-slot.dialing }()
	if b := slot.sess.Load(); b != nil && b.s.Accepting() {
		return b, nil
	}
	if b := slot.sess.Load(); b != nil {
		b.s.Drain() // the replaced session closes once its calls end
	}
	dctx, cancel := context.WithTimeout(ctx, c.o.DialTimeout)
	defer cancel()
	// A transport such as QUIC cannot tell a dead address from a slow one
	// until its handshake times out: stop when the endpoint leaves the set.
	defer context.AfterFunc(ep.gone, cancel)()
	conn, err := ep.transport.Dial(dctx, ep.address)
	if err != nil {
		return nil, status.Errorf(status.Unavailable, "dial %s: %w", ep.addr, err)
	}
	if conn, err = c.secure(dctx, ep, conn); err != nil {
		return nil, err
	}
	// The handshake knows only its own timeout: close the connection if
	// the dial's deadline (and so the caller's) passes first.
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	s, err := c.o.Protocol.NewSession(conn, SessionOptions{Limits: c.o.Limits, Endpoint: ep.addr})
	if !stop() {
		if err == nil {
			s.Close()
		}
		if ctx.Err() != nil {
			return nil, status.FromError(ctx.Err())
		}
		return nil, status.Errorf(status.Unavailable, "connect %s: handshake timed out after %v", ep.addr, c.o.DialTimeout)
	}
	if err != nil {
		conn.Close()
		if c.o.TLS == nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)) {
			return nil, status.Errorf(status.Unavailable, "connect %s: %w (the server closed the connection during the handshake: if it requires TLS, this client's tls.mode must not be off)", ep.addr, err)
		}
		return nil, status.Errorf(status.Unavailable, "connect %s: %w", ep.addr, err)
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		s.Close()
		return nil, status.New(status.Unavailable, "client is closed")
	}
	c.o.Logger.Debug("connected", "endpoint", ep.addr)
	sb := &sessionBox{s: s, view: ConnView{Protocol: c.protoName, Transport: schemeOfAddr(ep.addr), Endpoint: ep.addr, Local: AddrString(conn.LocalAddr()), Remote: AddrString(conn.RemoteAddr())}}
	sb.stats.Open(time.Now())
	if c.o.TLS != nil {
		c.learnTLS(sb, conn)
	}
	slot.sess.Store(sb)
	return sb, nil
}

// secure runs the TLS handshake of a new connection to ep, unless the
// client is plaintext or the transport secures its connections itself. On
// failure it closes conn.
func (c *Client) secure(ctx context.Context, ep *Backend, conn net.Conn) (net.Conn, error) {
	if c.o.TLS == nil {
		return conn, nil
	}
	if _, own := ep.transport.(TLSTransport); own {
		return conn, nil
	}
	conf, err := c.o.TLS.ClientConfig(hostOf(ep.address), c.alpn)
	if err != nil {
		conn.Close()
		return nil, status.Errorf(status.Unavailable, "connect %s: %w", ep.addr, err)
	}
	tc := tls.Client(conn, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, status.Errorf(status.Unavailable, "connect %s: tls handshake: %w", ep.addr, err)
	}
	return tc, nil
}

// learnTLS records the session's TLS version and the server's identity. The
// client verified the server's certificate itself (TLS.ClientConfig), so
// the identity is its leaf's. A transport's connection other than a
// *tls.Conn (QUIC) may still be in a 0-RTT handshake, during which its
// state blocks: it is read by a goroutine of its own.
func (c *Client) learnTLS(sb *sessionBox, conn net.Conn) {
	src := TLSOf(conn)
	if src == nil {
		return
	}
	learn := func() {
		cs := src.ConnectionState()
		if info := NewTLSInfo(&cs); info != nil {
			if info.Peer == "" && len(cs.PeerCertificates) > 0 {
				info.Peer = Identity(cs.PeerCertificates[0])
			}
			sb.tls.Store(info)
		}
	}
	if _, ok := src.(*tls.Conn); ok {
		learn()
		return
	}
	go learn()
}

// warm connects the first connection slot of e, within the dial timeout,
// unless a call is connecting it already; a failure is left for the calls
// to find.
func (c *Client) warm(e *Backend) {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.DialTimeout)
	defer cancel()
	if _, err := c.dial(ctx, e, &e.slots[0], false); err != nil && err != errDialBusy {
		c.o.Logger.Debug("connecting a new endpoint ahead of its calls failed", "endpoint", e.addr, "err", err)
	}
}

// schemeOfAddr returns the URL scheme of an endpoint address ("tcp" when it
// has none).
func schemeOfAddr(addr string) string {
	scheme, _ := SplitAddress(addr)
	return scheme
}

// Sessions returns a view of each of the client's open sessions: the
// endpoint, the transport's scheme, the protocol, the calls in flight and
// the calls finished by status code (a stream counts once it has ended).
// It takes the client's lock only to copy the endpoint set.
func (c *Client) Sessions() []ConnView {
	c.mu.Lock()
	eps := c.eps
	c.mu.Unlock()
	var out []ConnView
	for _, e := range eps {
		for i := range e.slots {
			sb := e.slots[i].sess.Load()
			if sb == nil {
				continue
			}
			select {
			case <-sb.s.Done():
				continue
			default:
			}
			v := sb.stats.View(sb.view)
			v.InFlight = sb.s.InFlight()
			if info := sb.tls.Load(); info != nil {
				v.TLSVersion, v.PeerIdentity = info.Version, info.Peer
			}
			out = append(out, v)
		}
	}
	return out
}
