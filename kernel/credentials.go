package kernel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel/config"
)

// KindCredentials is the extension point of TLS material: a Credentials
// plugin ("files", "dev") gives a listener or a client its certificate and
// the CAs it trusts, and may change both at any time (rotation).
const KindCredentials Kind = "credentials"

// Credentials is a source of TLS material. Material is called on every
// handshake, concurrently, and must be cheap (an atomic load): a plugin
// that rotates replaces the Material it returns, and each handshake after
// that uses the new one. A Credentials may be a Starter and an io.Closer
// (a file watcher, a renewal timer); it lives as long as the listener or
// client it was built for.
type Credentials interface {
	Material() *Material
}

// Material is one consistent set of TLS material. It is immutable once
// returned by Credentials.Material.
type Material struct {
	// Certificate is this side's chain and key; its Leaf is set.
	Certificate *tls.Certificate
	// Roots are the CAs whose certificates this side accepts from peers.
	Roots *x509.CertPool
}

// TLS modes (tls.mode).
const (
	TLSOff    = "off"    // plaintext
	TLSServer = "server" // the server presents a certificate; clients present none
	TLSMutual = "mutual" // both present certificates and verify each other (the default)
)

// TLS is a listener's or a client's TLS, resolved from its tls block: the
// mode and the credentials. A nil *TLS is plaintext.
type TLS struct {
	Mode  string
	Creds Credentials
	// MinVersion is TLS 1.3 in mutual mode; server mode allows TLS 1.2
	// with AEAD suites only when the block asks for it (min_version).
	MinVersion uint16
	// ServerIdentity, on a client, is the identity a server must present
	// (a SPIFFE ID or a DNS name); empty accepts any server certificate
	// that chains to the roots and, when it carries no SPIFFE ID, names
	// the host dialed.
	ServerIdentity string

	ident atomic.Pointer[identOf] // Identity's cache
}

// identOf is the identity of one Material.
type identOf struct {
	m  *Material
	id string
}

// Identity returns the identity of this side's current certificate (its
// SPIFFE ID, else its DNS name), "" without one. It is cheap: computed
// once per set of material.
func (t *TLS) Identity() string {
	if t == nil || t.Creds == nil {
		return ""
	}
	m := t.Creds.Material()
	if c := t.ident.Load(); c != nil && c.m == m {
		return c.id
	}
	c := &identOf{m: m}
	if m != nil && m.Certificate != nil {
		c.id = Identity(m.Certificate.Leaf)
	}
	t.ident.Store(c)
	return c.id
}

// errNoMaterial fails a handshake while the credentials have nothing yet.
var errNoMaterial = errors.New("kernel: tls: the credentials have no certificate yet")

// ServerConfig returns the tls.Config of a listener that offers the ALPN
// IDs alpn, in order. Every handshake takes the credentials' current
// material, so a rotation applies to the next handshake.
func (t *TLS) ServerConfig(alpn []string) *tls.Config {
	base := &tls.Config{MinVersion: t.MinVersion, NextProtos: alpn}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := t.Creds.Material()
		if m == nil || m.Certificate == nil {
			return nil, errNoMaterial
		}
		c := &tls.Config{
			MinVersion:   t.MinVersion,
			NextProtos:   alpn,
			Certificates: []tls.Certificate{*m.Certificate},
			CipherSuites: aeadSuites,
		}
		if t.Mode == TLSMutual {
			c.ClientAuth = tls.RequireAndVerifyClientCert
			c.ClientCAs = m.Roots
			c.VerifyPeerCertificate = refuseCALeaf
		}
		return c, nil
	}
	return base
}

// aeadSuites are the TLS 1.2 suites allowed when a server-mode listener
// accepts TLS 1.2 (TLS 1.3's are fixed and all AEAD).
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ClientConfig returns the tls.Config of one dial to host (the address's
// host part), asking for the ALPN IDs alpn. The server's chain is verified
// against the current roots; its identity as ServerIdentity says.
func (t *TLS) ClientConfig(host string, alpn []string) (*tls.Config, error) {
	m := t.Creds.Material()
	if m == nil || m.Roots == nil {
		return nil, errNoMaterial
	}
	c := &tls.Config{
		MinVersion: t.MinVersion,
		NextProtos: alpn,
		// Verified below (VerifyConnection): by SPIFFE ID, or by host
		// name when the server's certificate has none.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return t.verifyServer(cs, m.Roots, host)
		},
	}
	if !isIP(host) {
		c.ServerName = host
	}
	if t.Mode == TLSMutual {
		if m.Certificate == nil {
			return nil, errNoMaterial
		}
		// Always offered, even when the server's list of acceptable CAs
		// does not name its issuer: the server's refusal then says why
		// ("unknown certificate authority") instead of "certificate
		// required".
		cert := m.Certificate
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c, nil
}

func isIP(host string) bool { return net.ParseIP(host) != nil }

// verifyServer checks a server's chain against roots and its identity.
func (t *TLS) verifyServer(cs tls.ConnectionState, roots *x509.CertPool, host string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("kernel: tls: the server presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if leaf.IsCA {
		return fmt.Errorf("kernel: tls: the server's certificate %s is a CA certificate, which is not accepted as a peer's", DescribeCert(leaf))
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("kernel: tls: the server's certificate %s is not trusted: %w", DescribeCert(leaf), err)
	}
	id := spiffeID(leaf)
	switch {
	case t.ServerIdentity != "":
		if id == t.ServerIdentity || (id == "" && leaf.VerifyHostname(t.ServerIdentity) == nil) {
			return nil
		}
		return fmt.Errorf("kernel: tls: the server is %s, not %s as client.tls.server_identity requires", DescribeCert(leaf), t.ServerIdentity)
	case id != "":
		return nil // a workload identity, vouched for by the roots
	default:
		if err := leaf.VerifyHostname(host); err != nil {
			return fmt.Errorf("kernel: tls: the server's certificate has no SPIFFE ID and does not name %s: %w", host, err)
		}
		return nil
	}
}

// refuseCALeaf refuses a peer whose leaf is a CA certificate (the chain is
// verified already).
func refuseCALeaf(_ [][]byte, chains [][]*x509.Certificate) error {
	for _, ch := range chains {
		if len(ch) > 0 && ch[0].IsCA {
			return fmt.Errorf("kernel: tls: the client's certificate %s is a CA certificate, which is not accepted as a peer's", DescribeCert(ch[0]))
		}
	}
	return nil
}

// spiffeID returns cert's first spiffe:// URI SAN, or "".
func spiffeID(cert *x509.Certificate) string {
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

// Identity returns the identity a certificate names: its first URI SAN (a
// SPIFFE ID), else its first DNS SAN, else "".
func Identity(cert *x509.Certificate) string {
	switch {
	case cert == nil:
		return ""
	case len(cert.URIs) > 0:
		return cert.URIs[0].String()
	case len(cert.DNSNames) > 0:
		return cert.DNSNames[0]
	}
	return ""
}

// TrustDomain returns the trust domain of a SPIFFE ID ("spiffe://td/path"
// gives "td"), or "" for anything else.
func TrustDomain(id string) string {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return ""
	}
	td, _, _ := strings.Cut(rest, "/")
	return td
}

// DescribeCert names a certificate in errors and logs: its identity (or
// subject), serial and validity; never key material.
func DescribeCert(c *x509.Certificate) string {
	id := Identity(c)
	if id == "" {
		id = c.Subject.String()
	}
	return fmt.Sprintf("%q (serial %x, valid %s to %s)", id, c.SerialNumber, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
}

// TLSTransport is implemented by a transport that secures its connections
// with its own handshake (QUIC): it is built with BuildContext.TLS and the
// kernel does not wrap its connections in TLS.
type TLSTransport interface {
	OwnTLS()
}

// tlsServer terminates TLS on a listener's connections and hands each one,
// its handshake done within the handshake timeout, to the protocol server
// (a sniffer picks the protocol by ALPN). A failed handshake closes the
// connection and is logged at debug level with the peer and the reason.
type tlsServer struct {
	ServerConn
	conf    *tls.Config
	mode    string
	timeout time.Duration
	log     *slog.Logger
	logs    LogLimiter // failed handshakes are logged at most 10 a second
}

func (s *tlsServer) ServeConn(conn net.Conn) {
	// The first byte tells a TLS client (a handshake record) from a
	// plaintext one, which gets an answer it can show its user.
	var first [1]byte
	conn.SetReadDeadline(time.Now().Add(s.timeout))
	if _, err := io.ReadFull(conn, first[:]); err != nil {
		conn.Close()
		return
	}
	if first[0] != tlsHandshakeRecord {
		s.refusePlaintext(conn, first[0])
		return
	}
	conn.SetReadDeadline(time.Time{})
	tc := tls.Server(&prefixConn{Conn: conn, prefix: first[:]}, s.conf)
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		if ok, suppressed := s.logs.Allow(); ok {
			s.log.Warn("tls handshake failed", "remote", AddrString(conn.RemoteAddr()), "err", err, "failures_not_logged", suppressed)
		}
		conn.Close()
		return
	}
	s.ServerConn.ServeConn(tc)
}

// tlsHandshakeRecord is the first byte of every TLS client's first record.
const tlsHandshakeRecord = 0x16

// refusePlaintext answers a client that spoke plaintext to a TLS listener
// in its own protocol, where the kernel can tell it (an HTTP/2 connection
// preface gets GOAWAY INADEQUATE_SECURITY, an HTTP/1 request 400), with a
// message saying TLS is required, and closes the connection. Anything else
// (the native Axon client explains the closed handshake itself) is closed.
func (s *tlsServer) refusePlaintext(conn net.Conn, first byte) {
	defer conn.Close()
	buf := make([]byte, 1, MaxSniff)
	buf[0] = first
	h2, h1 := MatchPrefix(buf, HTTP2Preface), MatchHTTP1(buf)
	for (h2 == MatchMore || h1 == MatchMore) && len(buf) < MaxSniff {
		n, err := conn.Read(buf[len(buf):MaxSniff])
		buf = buf[:len(buf)+n]
		h2, h1 = MatchPrefix(buf, HTTP2Preface), MatchHTTP1(buf)
		if err != nil {
			break
		}
	}
	msg := fmt.Sprintf("this listener requires TLS (tls.mode %s); the client spoke plaintext", s.mode)
	s.log.Debug("plaintext client refused by a TLS listener", "remote", AddrString(conn.RemoteAddr()))
	conn.SetWriteDeadline(time.Now().Add(s.timeout))
	switch {
	case h2 == MatchYes:
		// An empty SETTINGS frame, then GOAWAY (last stream 0,
		// INADEQUATE_SECURITY) whose debug data is msg.
		out := []byte{0, 0, 0, 0x4, 0, 0, 0, 0, 0}
		payload := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 0), 0xc)
		payload = append(payload, msg...)
		out = append(out, byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload)), 0x7, 0, 0, 0, 0, 0)
		conn.Write(append(out, payload...))
	case h1 == MatchYes:
		fmt.Fprintf(conn, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(msg)+1, msg+"\n")
	default:
		return
	}
	// Let the answer reach the peer before the close, which would reset
	// the connection over the unread rest of its request.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		conn.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(conn, 64<<10))
	}
}

// Conns implements ConnReporter for the protocol server beneath.
func (s *tlsServer) Conns() []ConnView {
	if cr, ok := s.ServerConn.(ConnReporter); ok {
		return cr.Conns()
	}
	return nil
}

// alpnOf returns the ALPN IDs of protos, in order, without repeats.
func alpnOf(protos []Protocol) []string {
	var ids []string
	for _, p := range protos {
		if a, ok := p.(ALPNer); ok {
			for _, id := range a.ALPN() {
				if !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids
}

// hostOf returns the host part of a transport address ("" for a Unix
// socket path).
func hostOf(address string) string {
	if strings.HasPrefix(address, "/") || strings.HasPrefix(address, "@") {
		return ""
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return address
	}
	return host
}

// buildTLS builds the TLS of block t, found at path, for a listener or
// (listener false) a client, with its credentials plugin owned by insts;
// nil for mode off. Credentials that lack what the mode needs on that side
// are an error naming the block.
func buildTLS(cat *Catalog, bc BuildContext, t TLSConfig, path string, listener bool, insts *instances) (*TLS, error) {
	if err := t.check(path); err != nil {
		return nil, err
	}
	if t.Mode == TLSOff {
		return nil, nil
	}
	opts := withPath(t.Options, path)
	if t.Credentials == "files" {
		tree := map[string]any{}
		for k, v := range map[string]string{"ca_file": t.CAFile, "cert_file": t.CertFile, "key_file": t.KeyFile} {
			if v != "" {
				tree[k] = v
			}
		}
		if t.ExpiryWarning > 0 {
			tree["expiry_warning"] = t.ExpiryWarning.String()
		}
		opts = config.Raw{Path: path, Tree: tree}
	}
	creds, err := build[Credentials](cat, bc, KindCredentials, t.Credentials, path+".credentials", opts)
	if err != nil {
		var fe *config.Error
		if errors.As(err, &fe) || strings.HasPrefix(err.Error(), "config: ") {
			return nil, err // names its key already
		}
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	insts.own(KindCredentials, t.Credentials, path, creds)
	m := creds.Material()
	needCert := listener || t.Mode == TLSMutual
	needRoots := !listener || t.Mode == TLSMutual
	if m == nil || (needCert && m.Certificate == nil) || (needRoots && m.Roots == nil) {
		var what []string
		if needCert && (m == nil || m.Certificate == nil) {
			what = append(what, "a certificate and key (cert_file, key_file)")
		}
		if needRoots && (m == nil || m.Roots == nil) {
			what = append(what, "the CAs to trust (ca_file)")
		}
		side := "a client"
		if listener {
			side = "a listener"
		}
		return nil, fmt.Errorf("config: %s: tls mode %s on %s needs %s", path, t.Mode, side, strings.Join(what, " and "))
	}
	out := &TLS{Mode: t.Mode, Creds: creds, MinVersion: tls.VersionTLS13, ServerIdentity: t.ServerIdentity}
	if t.MinVersion == "1.2" {
		out.MinVersion = tls.VersionTLS12
	}
	return out, nil
}

// CertState is what credentials publish in the live view (Publisher): the
// current certificate's identity, serial and expiry, and when it is
// rotated next (zero when unknown, as with files rotated by someone else).
func CertState(m *Material, next time.Time) map[string]any {
	st := map[string]any{}
	if m == nil || m.Certificate == nil || m.Certificate.Leaf == nil {
		st["certificate"] = "none"
		return st
	}
	leaf := m.Certificate.Leaf
	st["identity"] = Identity(leaf)
	st["serial"] = fmt.Sprintf("%x", leaf.SerialNumber)
	st["not_after"] = leaf.NotAfter.UTC().Format(time.RFC3339)
	if !next.IsZero() {
		st["next_rotation"] = next.UTC().Format(time.RFC3339)
	}
	return st
}
