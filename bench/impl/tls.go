package impl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
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

// writeTLSFiles makes a new CA, a server leaf (tlsServerID, DNS localhost,
// IP 127.0.0.1) and a client leaf (tlsClientID), and writes them to f.
func writeTLSFiles(f tlsFiles) error {
	ca, caKey, err := newTLSCA("axon bench CA")
	if err != nil {
		return err
	}
	srv, srvKey, err := issueTLSLeaf(ca, caKey, tlsServerID, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	cli, cliKey, err := issueTLSLeaf(ca, caKey, tlsClientID, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		path string
		typ  string
		der  []byte
	}{
		{f.CA, "CERTIFICATE", ca.Raw},
		{f.ServerCert, "CERTIFICATE", srv},
		{f.ServerKey, "PRIVATE KEY", srvKey},
		{f.ClientCert, "CERTIFICATE", cli},
		{f.ClientKey, "PRIVATE KEY", cliKey},
	} {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), 0o600); err != nil {
			return fmt.Errorf("bench tls: %w", err)
		}
	}
	return nil
}

// newTLSCA returns a new self-signed ECDSA P-256 CA named name.
func newTLSCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("bench tls: ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if err := setValidity(tmpl); err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("bench tls: ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("bench tls: ca certificate: %w", err)
	}
	return cert, key, nil
}

// issueTLSLeaf signs a new ECDSA P-256 leaf for the SPIFFE ID id with
// extended key usage use; a server leaf also names localhost and
// 127.0.0.1. It returns the certificate's DER and the key's PKCS #8 DER.
func issueTLSLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, id string, use x509.ExtKeyUsage) (cert, key []byte, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("bench tls: %s key: %w", id, err)
	}
	u, err := url.Parse(id)
	if err != nil {
		return nil, nil, fmt.Errorf("bench tls: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: id},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{use},
		URIs:        []*url.URL{u},
	}
	if use == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if err := setValidity(tmpl); err != nil {
		return nil, nil, err
	}
	cert, err = x509.CreateCertificate(rand.Reader, tmpl, ca, k.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("bench tls: %s certificate: %w", id, err)
	}
	key, err = x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, fmt.Errorf("bench tls: %s key: %w", id, err)
	}
	return cert, key, nil
}

// setValidity gives tmpl a random serial and tlsLife from an hour ago.
func setValidity(tmpl *x509.Certificate) error {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("bench tls: serial: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = serial, now.Add(-time.Hour), now.Add(tlsLife)
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

// grpcServerTLS is the grpc-tls server's configuration: TLS 1.3, the
// server leaf, and client certificates required and verified against the
// CA.
func (f tlsFiles) grpcServerTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	if err != nil {
		return nil, fmt.Errorf("bench tls: %w", err)
	}
	pool, err := f.caPool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// grpcClientTLS is the grpc-tls client's configuration: TLS 1.3, the
// client leaf, and the server verified against the CA (by the host dialed,
// 127.0.0.1, which the server leaf names).
func (f tlsFiles) grpcClientTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("bench tls: %w", err)
	}
	pool, err := f.caPool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
	}, nil
}
