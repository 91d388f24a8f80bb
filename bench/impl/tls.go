package impl

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/axonrpc/axon/internal/devca"
)

// The identities of the TLS impls' certificates. Both leaves are in one
// trust domain, the one an Axon server with authz and no rules would admit.
const (
	tlsServerID = "spiffe://bench.local/server"
	tlsClientID = "spiffe://bench.local/client"
)

// tlsDirName is the directory, in the state directory, that holds the TLS
// impls' certificates.
const tlsDirName = "bench-tls"

// tlsLife is how long the certificates are valid from their creation
// (with an hour's allowance for clock skew before it).
const tlsLife = 30 * 24 * time.Hour

// tlsFiles are the PEM files shared by the TLS impls: one ECDSA P-256 CA,
// the server's leaf and key, and the client's leaf and key.
type tlsFiles struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

func tlsFilesIn(dir string) tlsFiles {
	return tlsFiles{
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
}

// benchTLSFiles returns the TLS impls' files in the state directory (see
// Setup), creating them if they are missing: the first process to need
// them writes a complete set into a directory of its own and renames it
// into place, so processes starting together agree on one set and none
// ever sees a partial one. A set left by an earlier run in a kept state
// directory is used as it is.
func benchTLSFiles() (tlsFiles, error) {
	state, err := benchStateDir()
	if err != nil {
		return tlsFiles{}, err
	}
	dir := filepath.Join(state, tlsDirName)
	if _, err := os.Stat(dir); err == nil {
		return tlsFilesIn(dir), nil
	}
	tmp, err := os.MkdirTemp(state, tlsDirName+".tmp-")
	if err != nil {
		return tlsFiles{}, fmt.Errorf("bench tls: %w", err)
	}
	if err := writeTLSFiles(tlsFilesIn(tmp)); err != nil {
		os.RemoveAll(tmp)
		return tlsFiles{}, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		// Another process renamed its set into place first.
		if _, serr := os.Stat(dir); serr != nil {
			return tlsFiles{}, fmt.Errorf("bench tls: %w", err)
		}
	}
	return tlsFilesIn(dir), nil
}

// writeTLSFiles makes a new CA (Axon's development CA code, in f's
// directory), a server leaf (tlsServerID, localhost, 127.0.0.1, ::1) and a
// client leaf (tlsClientID), and writes them to f.
func writeTLSFiles(f tlsFiles) error {
	ca, err := devca.LoadOrCreateCA(filepath.Dir(f.CA))
	if err != nil {
		return fmt.Errorf("bench tls: %w", err)
	}
	if err := writePEM(f.CA, "CERTIFICATE", ca.Cert().Raw); err != nil {
		return err
	}
	for _, leaf := range []struct{ id, cert, key string }{{tlsServerID, f.ServerCert, f.ServerKey}, {tlsClientID, f.ClientCert, f.ClientKey}} {
		id, err := url.Parse(leaf.id)
		if err != nil {
			return fmt.Errorf("bench tls: %w", err)
		}
		c, err := ca.Issue("127.0.0.1", id, tlsLife)
		if err != nil {
			return fmt.Errorf("bench tls: %s: %w", leaf.id, err)
		}
		key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
		if err != nil {
			return fmt.Errorf("bench tls: %s: %w", leaf.id, err)
		}
		if err := writePEM(leaf.cert, "CERTIFICATE", c.Certificate[0]); err != nil {
			return err
		}
		if err := writePEM(leaf.key, "PRIVATE KEY", key); err != nil {
			return err
		}
	}
	return nil
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("bench tls: %w", err)
	}
	return nil
}

// caPool returns a pool holding the CA of f.
func (f tlsFiles) caPool() (*x509.CertPool, error) {
	b, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("bench tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("bench tls: %s holds no PEM certificate", f.CA)
	}
	return pool, nil
}

// serverTLS is the TLS impls' server configuration (grpc-tls and
// raw-pingpong-tls; axon-tls has Axon's own): TLS 1.3, the server leaf, and
// client certificates required and verified against the CA.
func serverTLS() (*tls.Config, error) {
	conf, err := baseTLS(func(f tlsFiles) (string, string) { return f.ServerCert, f.ServerKey })
	if err != nil {
		return nil, err
	}
	conf.ClientAuth, conf.ClientCAs, conf.RootCAs = tls.RequireAndVerifyClientCert, conf.RootCAs, nil
	return conf, nil
}

// clientTLS is the TLS impls' client configuration for a server at addr:
// TLS 1.3, the client leaf, and the server verified against the CA by the
// host of addr (127.0.0.1, which the server leaf names).
func clientTLS(addr string) (*tls.Config, error) {
	conf, err := baseTLS(func(f tlsFiles) (string, string) { return f.ClientCert, f.ClientKey })
	if err != nil {
		return nil, err
	}
	conf.ServerName, _, _ = net.SplitHostPort(addr)
	return conf, nil
}

// baseTLS returns a TLS 1.3 configuration with the bench leaf that pick
// names and the bench CA as RootCAs.
func baseTLS(pick func(tlsFiles) (cert, key string)) (*tls.Config, error) {
	f, err := benchTLSFiles()
	if err != nil {
		return nil, err
	}
	certFile, keyFile := pick(f)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("bench tls: %w", err)
	}
	pool, err := f.caPool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}, nil
}
