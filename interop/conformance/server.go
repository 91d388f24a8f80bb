package conformance

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/fx"
	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/internal/devca"
	v1 "github.com/axonrpc/axon/interop/conformance/internal/gen/conformancev1"
	"github.com/axonrpc/axon/kernel"
	jsoncodec "github.com/axonrpc/axon/plugins/codec-json"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	files "github.com/axonrpc/axon/plugins/credentials-files"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpc "github.com/axonrpc/axon/plugins/protocol-grpc"
	static "github.com/axonrpc/axon/plugins/registry-static"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// maxCompatMessage bounds the size prefix of a ServerCompatRequest read
// from the runner.
const maxCompatMessage = 16 << 20

// ReadRequest reads one size-delimited ServerCompatRequest from r: a 4-byte
// big-endian length, then that many bytes of protobuf.
func ReadRequest(r io.Reader) (*v1.ServerCompatRequest, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("conformance: read request size: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxCompatMessage {
		return nil, fmt.Errorf("conformance: request of %d bytes exceeds %d", size, maxCompatMessage)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("conformance: read request: %w", err)
	}
	req := new(v1.ServerCompatRequest)
	if err := proto.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("conformance: decode request: %w", err)
	}
	return req, nil
}

// WriteResponse writes resp to w size-delimited, as ReadRequest reads.
func WriteResponse(w io.Writer, resp *v1.ServerCompatResponse) error {
	b, err := proto.Marshal(resp)
	if err != nil {
		return fmt.Errorf("conformance: encode response: %w", err)
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	if _, err := w.Write(append(out, b...)); err != nil {
		return fmt.Errorf("conformance: write response: %w", err)
	}
	return nil
}

// Plugins is the plugin set of the conformance server: TCP, the gRPC,
// gRPC-Web and native protocols, the proto and JSON codecs, the static
// registry (which registers nothing outside the process) and the files
// credentials.
var Plugins = fx.Options(
	tcp.Module,
	files.Module,
	native.Module,
	grpc.Module,
	protocodec.Module,
	jsoncodec.Module,
	static.Module,
)

// Config returns the server configuration that answers req: one TCP
// listener on 127.0.0.1 with a port the system picks, serving protocols,
// accepting the proto and JSON codecs, with req's message receive limit.
// When req asks for TLS, Config writes certificates into dir (which the
// caller creates and removes) and returns the PEM of the CA that the
// runner's clients must trust (ServerCompatResponse.pem_cert); see tlsBlock.
func Config(req *v1.ServerCompatRequest, dir string, protocols ...string) (*kernel.Config, []byte, error) {
	protos := make([]any, len(protocols))
	for i, p := range protocols {
		protos[i] = p
	}
	limits := map[string]any{}
	if n := req.GetMessageReceiveLimit(); n > 0 {
		limits["max_message"] = strconv.FormatUint(uint64(n), 10) + "B"
	}
	tlsConf, caPEM := map[string]any{"mode": "off"}, []byte(nil)
	if req.GetUseTls() {
		var err error
		if tlsConf, caPEM, err = tlsBlock(dir, req.GetClientTlsCert()); err != nil {
			return nil, nil, err
		}
	}
	cfg, err := kernel.ParseConfig(map[string]any{
		"service": "conformance",
		"listen": []any{map[string]any{
			"transport": "tcp",
			"address":   "127.0.0.1:0",
			"protocols": protos,
		}},
		"tls":      tlsConf,
		"registry": map[string]any{"use": "static"},
		"server": map[string]any{
			"codecs": []any{"proto", "json"},
			"limits": limits,
		},
	})
	return cfg, caPEM, err
}

// tlsBlock writes a TLS setup for one test case into dir, the way an Axon
// user brings their own CA (credentials: files): a new CA (the development
// CA's code), a server certificate from it for 127.0.0.1 and localhost, and
// the CA bundle that client certificates are checked against. Without
// clientCert (PEM) the listener is in server mode; with it, mutual mode, and
// the bundle holds the runner's self-signed client certificate beside the
// CA. It returns the config's tls block and the CA's PEM.
func tlsBlock(dir string, clientCert []byte) (map[string]any, []byte, error) {
	ca, err := devca.LoadOrCreateCA(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("conformance: tls: %w", err)
	}
	leaf, err := ca.Issue("127.0.0.1", nil, 24*time.Hour)
	if err != nil {
		return nil, nil, fmt.Errorf("conformance: tls: issue the server certificate: %w", err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("conformance: tls: %w", err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert().Raw})
	mode := "server"
	bundle := caPEM
	if len(clientCert) > 0 {
		mode = "mutual"
		bundle = append(append([]byte{}, caPEM...), clientCert...)
	}
	files := map[string][]byte{
		"ca.pem":   bundle,
		"cert.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}),
		"key.pem":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, nil, fmt.Errorf("conformance: tls: %w", err)
		}
	}
	return map[string]any{
		"mode":        mode,
		"credentials": "files",
		"ca_file":     filepath.Join(dir, "ca.pem"),
		"cert_file":   filepath.Join(dir, "cert.pem"),
		"key_file":    filepath.Join(dir, "key.pem"),
	}, caPEM, nil
}

// Server is a running conformance server.
type Server struct {
	rt   *kernel.Runtime
	app  *fx.App
	Host string
	Port uint32
}

// Start starts a server of ConformanceService with cfg, built from Plugins
// through the kernel runtime, logging to log.
func Start(ctx context.Context, cfg *kernel.Config, log *slog.Logger) (*Server, error) {
	var rt *kernel.Runtime
	app := fx.New(
		Plugins, kernel.Module,
		kernel.ProvideService(NewService),
		fx.Supply(log),
		fx.NopLogger,
		fx.Populate(&rt),
	)
	if err := app.Err(); err != nil {
		return nil, fmt.Errorf("conformance: compose server: %w", err)
	}
	// Process-lifetime plugins start before the first generation.
	if err := app.Start(ctx); err != nil {
		return nil, fmt.Errorf("conformance: start plugins: %w", err)
	}
	s := &Server{rt: rt, app: app}
	fail := func(err error) (*Server, error) {
		s.Shutdown(ctx)
		return nil, err
	}
	if err := rt.Apply(ctx, cfg); err != nil {
		return fail(fmt.Errorf("conformance: start server: %w", err))
	}
	eps := rt.Endpoints()
	if len(eps) == 0 {
		return fail(errors.New("conformance: the server has no endpoint"))
	}
	_, addr := kernel.SplitAddress(eps[0].Address)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fail(fmt.Errorf("conformance: endpoint %q: %w", eps[0].Address, err))
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fail(fmt.Errorf("conformance: endpoint %q: %w", eps[0].Address, err))
	}
	s.Host, s.Port = host, uint32(p)
	return s, nil
}

// Runtime returns the server's runtime.
func (s *Server) Runtime() *kernel.Runtime { return s.rt }

// Shutdown drains the server's calls (until ctx is done), stops it, then
// stops the process-lifetime plugins.
func (s *Server) Shutdown(ctx context.Context) error {
	return errors.Join(s.rt.Shutdown(ctx), s.app.Stop(ctx))
}
