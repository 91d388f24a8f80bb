package conformance

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"

	"go.uber.org/fx"
	"google.golang.org/protobuf/proto"

	v1 "github.com/axonrpc/axon/interop/conformance/internal/gen/conformancev1"
	"github.com/axonrpc/axon/kernel"
	jsoncodec "github.com/axonrpc/axon/plugins/codec-json"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
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
// gRPC-Web and native protocols, the proto and JSON codecs, and the static
// registry (which registers nothing outside the process).
var Plugins = fx.Options(
	tcp.Module,
	native.Module,
	grpc.Module,
	protocodec.Module,
	jsoncodec.Module,
	static.Module,
)

// Config returns the server configuration that answers req: one plaintext
// TCP listener on 127.0.0.1 with a port the system picks, serving protocols,
// accepting the proto and JSON codecs, with req's message receive limit. A
// request for TLS is an error: this runner does not set up certificates for
// the suite yet (TLS is tested by e2e/tls_test.go and the grpcurl suite).
func Config(req *v1.ServerCompatRequest, protocols ...string) (*kernel.Config, error) {
	if req.GetUseTls() {
		return nil, errors.New("conformance: TLS is not supported yet; configure the suite with supports_tls: false")
	}
	protos := make([]any, len(protocols))
	for i, p := range protocols {
		protos[i] = p
	}
	limits := map[string]any{}
	if n := req.GetMessageReceiveLimit(); n > 0 {
		limits["max_message"] = strconv.FormatUint(uint64(n), 10) + "B"
	}
	return kernel.ParseConfig(map[string]any{
		"service": "conformance",
		"listen": []any{map[string]any{
			"transport": "tcp",
			"address":   "127.0.0.1:0",
			"protocols": protos,
		}},
		"tls":      map[string]any{"mode": "off"},
		"registry": map[string]any{"use": "static"},
		"server": map[string]any{
			"codecs": []any{"proto", "json"},
			"limits": limits,
		},
	})
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
