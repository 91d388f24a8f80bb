package quic

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/axonrpc/axon/internal/devca"
)

// serverTLS returns the listening side's TLS: the listener's tls block
// when it is not off (its credentials, rotating, and in mutual mode client
// certificates required); else the configured certificate, or a
// development leaf for host signed by the development CA (created in the
// state directory if there is none).
func (t *Transport) serverTLS(host string) (*tls.Config, error) {
	if t.tls != nil {
		return t.tls.ServerConfig([]string{ALPN}), nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{ALPN}}
	if t.cfg.CertFile != "" {
		kp, err := tls.LoadX509KeyPair(t.cfg.CertFile, t.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load cert_file/key_file: %w", err)
		}
		conf.Certificates = []tls.Certificate{kp}
		return conf, nil
	}
	dir, err := devca.StateDir(t.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	ca, err := devca.LoadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	src := &leafSource{ca: ca, host: host}
	if _, err := src.get(nil); err != nil {
		return nil, err
	}
	conf.GetCertificate = src.get
	return conf, nil
}

// clientTLS returns the dialing side's TLS for a server named host: the
// client's tls block when it is not off; else the roots are ca_file if set, the system's if a certificate is configured,
// and otherwise the development CA from the state directory, which a
// server on this machine creates. What was loaded is kept for later dials;
// a missing development CA is looked for again on the next dial.
func (t *Transport) clientTLS(host, address string) (*tls.Config, error) {
	if t.tls != nil {
		conf, err := t.tls.ClientConfig(host, []string{ALPN})
		if err != nil {
			return nil, err
		}
		conf.ClientSessionCache = addrCache{t.sessions, address}
		return conf, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client == nil {
		conf := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{ALPN}}
		switch {
		case t.cfg.CAFile != "":
			pem, err := os.ReadFile(t.cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("load ca_file: %w", err)
			}
			conf.RootCAs = x509.NewCertPool()
			if !conf.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ca_file %s holds no PEM certificate", t.cfg.CAFile)
			}
		case t.cfg.CertFile != "":
			// The system roots (RootCAs nil).
		default:
			dir, err := devca.StateDir(t.cfg.StateDir)
			if err != nil {
				return nil, err
			}
			cert, err := devca.LoadCACert(dir)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("no ca_file is configured and there is no development CA in %s (a server using the development CA on this machine creates it; or set ca_file)", dir)
			}
			if err != nil {
				return nil, err
			}
			conf.RootCAs = x509.NewCertPool()
			conf.RootCAs.AddCert(cert)
		}
		if t.cfg.CertFile != "" {
			kp, err := tls.LoadX509KeyPair(t.cfg.CertFile, t.cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("load cert_file/key_file: %w", err)
			}
			conf.Certificates = []tls.Certificate{kp}
		}
		t.client = conf
	}
	conf := t.client.Clone()
	conf.ServerName = host
	conf.ClientSessionCache = addrCache{t.sessions, address}
	return conf, nil
}

// leafLife is how long a development leaf of a plaintext-configured
// (tls.mode off) QUIC listener lives; leafRenew is how close to its expiry
// it is replaced.
const (
	leafLife  = 30 * 24 * time.Hour
	leafRenew = 24 * time.Hour
)

// leafSource serves a development leaf for one host, replacing it before it
// expires.
type leafSource struct {
	ca   *devca.CA
	host string

	mu   sync.Mutex
	cert *tls.Certificate
}

func (s *leafSource) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert == nil || time.Until(s.cert.Leaf.NotAfter) < leafRenew {
		c, err := s.ca.Issue(s.host, nil, leafLife)
		if err != nil {
			return nil, fmt.Errorf("transport.quic: development certificate for %s: %w", s.host, err)
		}
		s.cert = c
	}
	return s.cert, nil
}

// addrCache keys resumable sessions by the server's address as well as its
// name: servers on one host but different ports have different session
// ticket keys, and a ticket from one makes the other reject 0-RTT.
type addrCache struct {
	tls.ClientSessionCache
	addr string
}

func (c addrCache) Get(key string) (*tls.ClientSessionState, bool) {
	return c.ClientSessionCache.Get(c.addr + " " + key)
}

func (c addrCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(c.addr+" "+key, cs)
}
