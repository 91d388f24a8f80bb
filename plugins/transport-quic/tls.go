package quic

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// serverTLS returns the listening side's TLS: the configured certificate,
// or a development leaf for host signed by the development CA (created in
// the state directory if there is none).
func (t *Transport) serverTLS(host string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{ALPN}}
	if t.cfg.CertFile != "" {
		kp, err := tls.LoadX509KeyPair(t.cfg.CertFile, t.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load cert_file/key_file: %w", err)
		}
		conf.Certificates = []tls.Certificate{kp}
		return conf, nil
	}
	dir, err := stateDir(t.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	ca, err := loadOrCreateCA(dir)
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

// clientTLS returns the dialing side's TLS for a server named host. The
// roots are ca_file if set, the system's if a certificate is configured,
// and otherwise the development CA from the state directory, which a
// server on this machine creates. What was loaded is kept for later dials;
// a missing development CA is looked for again on the next dial.
func (t *Transport) clientTLS(host, address string) (*tls.Config, error) {
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
			dir, err := stateDir(t.cfg.StateDir)
			if err != nil {
				return nil, err
			}
			cert, err := loadCACert(filepath.Join(dir, caDir))
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
