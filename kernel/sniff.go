package kernel

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"sync"
	"time"
)

// Match is a protocol's verdict on the first bytes of a connection.
type Match int

const (
	// MatchNo: the connection does not speak the protocol.
	MatchNo Match = iota
	// MatchMore: the bytes so far are a prefix of the protocol's opening;
	// more are needed to tell.
	MatchMore
	// MatchYes: the connection speaks the protocol.
	MatchYes
)

// Matcher is implemented by a protocol that can recognise its connections in
// cleartext by their first bytes, so that one listener can serve several
// protocols (listen[].protocols: [axon, grpc, grpc-web]). Match must be
// cheap, must not retain prefix, and must decide within MaxSniff bytes.
type Matcher interface {
	Match(prefix []byte) Match
}

// ALPNer is implemented by a protocol that TLS clients can ask for by
// application protocol (ALPN), such as "h2" for gRPC. On a listener shared by
// several protocols, a TLS connection whose handshake negotiated one of these
// IDs goes to the first protocol (in config order) that lists it, without
// looking at its bytes; a TLS connection without ALPN is sniffed like a
// cleartext one.
type ALPNer interface {
	ALPN() []string
}

// MaxSniff is the most bytes a listener reads to tell protocols apart.
const MaxSniff = 64

// HTTP2Preface is the client connection preface of HTTP/2 (RFC 9113 §3.4).
const HTTP2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// MatchPrefix matches a connection that begins with want.
func MatchPrefix(prefix []byte, want string) Match {
	n := min(len(prefix), len(want))
	if string(prefix[:n]) != want[:n] {
		return MatchNo
	}
	if n < len(want) {
		return MatchMore
	}
	return MatchYes
}

// maxMethod is the longest HTTP/1 method token MatchHTTP1 accepts.
const maxMethod = 16

// MatchHTTP1 matches a connection that begins with an HTTP/1.x request
// line: a method token of capital letters (any method, so that the server
// can answer one it does not allow with 405) followed by a space. The HTTP/2
// preface ("PRI * HTTP/2.0") is not HTTP/1.
func MatchHTTP1(prefix []byte) Match {
	for i, c := range prefix {
		switch {
		case c == ' ' && i > 0:
			if string(prefix[:i]) == "PRI" {
				return MatchNo
			}
			return MatchYes
		case c < 'A' || c > 'Z' || i >= maxMethod:
			return MatchNo
		}
	}
	return MatchMore
}

// sniffer serves several protocols on one listener: under TLS it picks the
// protocol by ALPN; otherwise it reads a connection's first bytes and gives
// the connection to the first protocol (in config order) that claims them.
// It closes a connection that no protocol claims, or that is silent for the
// handshake timeout.
type sniffer struct {
	matchers []Matcher
	alpn     [][]string // per protocol, the ALPN IDs it answers to
	servers  []ServerConn
	timeout  time.Duration
}

func (s *sniffer) ServeConn(conn net.Conn) {
	if tc, ok := conn.(*tls.Conn); ok {
		proto, err := s.handshake(tc)
		if err != nil {
			conn.Close()
			return
		}
		if proto != "" {
			for i, ids := range s.alpn {
				if slices.Contains(ids, proto) {
					s.servers[i].ServeConn(tc)
					return
				}
			}
			conn.Close() // the listener offered an ID no protocol serves
			return
		}
	}
	i, prefix, err := s.sniff(conn)
	if err != nil {
		conn.Close()
		return
	}
	s.servers[i].ServeConn(&prefixConn{Conn: conn, prefix: prefix})
}

// handshake completes a TLS handshake within the handshake timeout and
// returns the negotiated application protocol ("" when none).
func (s *sniffer) handshake(tc *tls.Conn) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return "", err
	}
	return tc.ConnectionState().NegotiatedProtocol, nil
}

// errNoProtocol says that no protocol of the listener claimed a connection.
var errNoProtocol = errors.New("kernel: no protocol of this listener matches the connection's first bytes")

// sniff reads until one protocol says yes or all say no. It returns the
// index of the protocol and the bytes read.
func (s *sniffer) sniff(conn net.Conn) (int, []byte, error) {
	conn.SetReadDeadline(time.Now().Add(s.timeout))
	defer conn.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, MaxSniff)
	for len(buf) < MaxSniff {
		n, err := conn.Read(buf[len(buf):MaxSniff])
		buf = buf[:len(buf)+n]
		if n > 0 {
			// The first protocol, in config order, that does not say no
			// decides: a later one's yes waits until every earlier one
			// has said no.
			i, m := firstMatch(s.matchers, buf)
			switch m {
			case MatchYes:
				return i, buf, nil
			case MatchNo:
				return 0, nil, errNoProtocol
			}
		}
		if err != nil {
			return 0, nil, err
		}
	}
	return 0, nil, errNoProtocol
}

// firstMatch returns the first matcher that does not say no to prefix and
// its verdict, or MatchNo when all do.
func firstMatch(ms []Matcher, prefix []byte) (int, Match) {
	for i, m := range ms {
		if v := m.Match(prefix); v != MatchNo {
			return i, v
		}
	}
	return 0, MatchNo
}

func (s *sniffer) Shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(s.servers))
	for i, srv := range s.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = srv.Shutdown(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// prefixConn is a connection whose first bytes were already read by the
// sniffer; Read returns them before reading from the connection again.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection when the underlying one can (TCP,
// Unix sockets), so that a server can finish sending before it closes.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("kernel: connection cannot half-close")
}

// NetConn returns the underlying connection, for code that needs its
// concrete type (for example to read TLS state). Its first bytes have been
// consumed.
func (c *prefixConn) NetConn() net.Conn { return c.Conn }
