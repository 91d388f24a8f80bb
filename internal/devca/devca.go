// Package devca is the local development CA, shared by the dev credentials
// and the QUIC transport's own development certificates.
package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"time"
)

// The development CA lives in <state_dir>/dev-ca: ca.pem (the certificate,
// which clients trust) and ca-key.pem (its key, which only the server
// reads). The directory is created 0700 and the files 0600, atomically: the
// files are written into a temporary directory that is then renamed, so two
// servers starting at once agree on one CA.
const (
	caDir  = "dev-ca"
	caCert = "ca.pem"
	caKey  = "ca-key.pem"
	caLife = 10 * 365 * 24 * time.Hour
)

// StateDir returns the configured state directory, or the default:
// $XDG_STATE_HOME/axon, else ~/.local/state/axon.
func StateDir(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if x := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "axon"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no state_dir is configured and there is no home directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "axon"), nil
}

// CA is the local development CA. Its methods are safe for concurrent use.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// LoadOrCreateCA returns the development CA in dir (a state directory),
// creating the directory and the CA if there is none.
func LoadOrCreateCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("development CA: %w", err)
	}
	final := filepath.Join(dir, caDir)
	ca, err := loadCA(final)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return ca, err
	}
	tmp, err := os.MkdirTemp(dir, ".dev-ca-")
	if err != nil {
		return nil, fmt.Errorf("development CA: %w", err)
	}
	defer os.RemoveAll(tmp)
	ca, certPEM, keyPEM, err := newCA()
	if err != nil {
		return nil, fmt.Errorf("development CA: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, caKey), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("development CA: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, caCert), certPEM, 0o600); err != nil {
		return nil, fmt.Errorf("development CA: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another server created it first: use that one.
		if theirs, lerr := loadCA(final); lerr == nil {
			return theirs, nil
		}
		return nil, fmt.Errorf("development CA: %w", err)
	}
	return ca, nil
}

// loadCA reads the CA in dir. The key must be readable by this user only.
func loadCA(dir string) (*CA, error) {
	cert, err := loadCACert(dir)
	if err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, caKey)
	fi, err := os.Stat(keyPath)
	if err != nil {
		// Not %w: a missing key next to a certificate is damage, not "no CA yet".
		return nil, fmt.Errorf("development CA: %v", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("development CA: key %s has mode %v; it must be readable by its owner only (chmod 600)", keyPath, fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("development CA: %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("development CA: %s holds no PEM key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("development CA: %s: %w", keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("development CA: %s: key of type %T cannot sign", keyPath, k)
	}
	return &CA{cert: cert, key: signer}, nil
}

// LoadCACert reads the development CA's certificate in the state
// directory stateDir; an error satisfying errors.Is(err, fs.ErrNotExist)
// says there is none yet.
func LoadCACert(stateDir string) (*x509.Certificate, error) {
	return loadCACert(filepath.Join(stateDir, caDir))
}

// loadCACert reads the CA certificate in dir, which nobody but its owner
// may be able to change.
func loadCACert(dir string) (*x509.Certificate, error) {
	path := filepath.Join(dir, caCert)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err // fs.ErrNotExist tells the caller there is no CA yet
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("development CA: %s has mode %v; others must not be able to write it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("development CA: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("development CA: %s holds no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("development CA: %s: %w", path, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("development CA: %s is not a CA certificate", path)
	}
	return cert, nil
}

func newCA() (*CA, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		who += "@" + h
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Axon development CA"}, CommonName: "Axon development CA " + who},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLife),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return &CA{cert: cert, key: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return n
}

// Cert returns the CA's certificate, which peers trust.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// Issue issues a certificate for host's names (see names) and the extra
// names hosts (DNS names or IP addresses), with the URI SAN id (none when
// nil), valid for life (at most until the CA expires), usable by a server
// and a client alike. It is kept in memory only.
func (ca *CA) Issue(host string, id *url.URL, life time.Duration, hosts ...string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	dns, ips := names(host)
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	var uris []*url.URL
	if id != nil {
		uris = []*url.URL{id}
	}
	now := time.Now()
	notAfter := now.Add(life)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	cn := host
	if len(uris) > 0 {
		cn = uris[0].String()
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"Axon development"}, CommonName: cn},
		DNSNames:     dns,
		IPAddresses:  ips,
		URIs:         uris,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// names returns the subject alternative names of a leaf for the listen
// host: the host itself; for a loopback or unspecified address also
// localhost and both loopback addresses; for an unspecified one also the
// machine's host name.
func names(host string) (dns []string, ips []net.IP) {
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.IsUnspecified()):
		dns = []string{"localhost"}
		if h, err := os.Hostname(); err == nil && h != "" {
			dns = append(dns, h)
		}
		ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	case ip != nil && ip.IsLoopback():
		dns = []string{"localhost"}
		ips = []net.IP{ip}
		if !ip.Equal(net.IPv4(127, 0, 0, 1)) {
			ips = append(ips, net.IPv4(127, 0, 0, 1))
		}
		if !ip.Equal(net.IPv6loopback) {
			ips = append(ips, net.IPv6loopback)
		}
	case ip != nil:
		ips = []net.IP{ip}
	case host == "localhost":
		dns = []string{"localhost"}
		ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	default:
		dns = []string{host}
	}
	return dns, ips
}
