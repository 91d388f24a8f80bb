package kernel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"testing"
	"time"
)

// alpnMatcher is a protocol's matcher with ALPN IDs.
type alpnMatcher struct {
	Matcher
	ids []string
}

func (m alpnMatcher) ALPN() []string { return m.ids }

// selfSigned returns a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// TestSnifferPicksByALPNUnderTLS: over real TLS on loopback, the negotiated
// application protocol picks the protocol without looking at the bytes; a
// client without ALPN is sniffed by its first bytes; an ID no protocol
// serves fails the handshake.
func TestSnifferPicksByALPNUnderTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	axon, h2, h1 := &recordServer{make(chan string, 1)}, &recordServer{make(chan string, 1)}, &recordServer{make(chan string, 1)}
	matchers := []Matcher{
		alpnMatcher{prefixMatcher("\xa7AXON\r\n"), []string{"axon/1"}},
		alpnMatcher{prefixMatcher(HTTP2Preface), []string{"h2"}},
		alpnMatcher{http1Matcher{}, []string{"h2", "http/1.1"}},
	}
	sn := &sniffer{matchers: matchers, servers: []ServerConn{axon, h2, h1}, timeout: 10 * time.Second}
	for _, m := range matchers {
		sn.alpn = append(sn.alpn, m.(ALPNer).ALPN())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvCfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"axon/1", "h2", "http/1.1"}, MinVersion: tls.VersionTLS13}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go sn.ServeConn(tls.Server(c, srvCfg))
		}
	}()

	tests := []struct {
		name  string
		alpn  []string
		write string
		want  *recordServer // nil: the handshake fails
	}{
		{"alpn h2 goes to the first h2 protocol whatever the bytes", []string{"h2"}, "not a preface", h2},
		{"alpn axon", []string{"axon/1"}, "anything", axon},
		{"alpn http/1.1", []string{"http/1.1"}, "GET / HTTP/1.1\r\n", h1},
		{"no alpn: first bytes decide", nil, "POST / HTTP/1.1\r\n", h1},
		{"no alpn: axon preface", nil, "\xa7AXON\r\n\x01", axon},
		{"unknown alpn fails the handshake", []string{"spdy/3"}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: tt.alpn, MinVersion: tls.VersionTLS13})
			if tt.want == nil {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded, want it refused")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(tt.write)); err != nil {
				t.Fatal(err)
			}
			select {
			case got := <-tt.want.got:
				if got != tt.write {
					t.Fatalf("server got %q, want %q", got, tt.write)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the connection reached no server (or another one)")
			}
		})
	}
}
