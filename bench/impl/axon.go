package impl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	files "github.com/axonrpc/axon/plugins/credentials-files"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
	static "github.com/axonrpc/axon/plugins/registry-static"
	quic "github.com/axonrpc/axon/plugins/transport-quic"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
	uds "github.com/axonrpc/axon/plugins/transport-uds"
)

// Axon is the native Axon protocol over one of Axon's transports, composed
// the way `axon serve` composes it: a runtime generation built from a
// config, the proto codec, and wrapperspb.BytesValue as request and response
// (like the grpc impl). Only the transport differs between the registered
// Axon impls:
//
//   - "tcp" (impl "axon"): listens on the address Serve is given.
//   - "uds" (impl "axon-uds"): ignores the host:port Serve is given and
//     listens on a socket in a new short temporary directory, which Close
//     removes; Addr returns the socket path.
//   - "quic" (impl "axon-quic"): listens on the UDP address Serve is given,
//     with TLS 1.3 from the transport's development CA in the state directory
//     named by AXON_BENCH_STATE_DIR (see Setup), where the client looks for it
//     too.
//
// With TLS set (impl "axon-tls", over "tcp" only), the server's config has
// a mutual TLS 1.3 tls block of files credentials (the CA and the server's
// certificate) instead of `tls: off`, and the client's
// kernel.ClientOptions.TLS is mutual TLS 1.3 with files credentials (the CA
// and the client's certificate) that requires the server's identity. The
// files are the ones grpc-tls uses too, in the state directory (see
// benchTLSFiles).
//
// The client uses the config's default connections per endpoint unless
// AXON_BENCH_CONNS sets another number.
type Axon struct {
	// Transport is the transport plugin: "tcp", "uds" or "quic".
	Transport string
	// TLS turns on mutual TLS; only the "tcp" transport takes it.
	TLS bool
}

// Name is "axon" over TCP and "axon-<transport>" otherwise, followed by
// "-tls" with TLS.
func (a Axon) Name() string {
	name := "axon"
	if a.Transport != "tcp" {
		name += "-" + a.Transport
	}
	if a.TLS {
		name += "-tls"
	}
	return name
}

// errTLSTransport refuses TLS over a transport other than TCP.
var errTLSTransport = errors.New("axon: the TLS impls run over the tcp transport only")

const axonEchoMethod = "/bench.Echo/Call"

// StateDirEnv names the environment variable holding the directory shared
// by the harness and its server children; the QUIC impl keeps its
// development CA there. Setup sets it.
const StateDirEnv = "AXON_BENCH_STATE_DIR"

// Setup makes sure StateDirEnv names a directory: if it is unset, Setup
// creates a temporary directory and sets the variable, so that server
// children started afterwards inherit it, and the returned cleanup removes
// the directory and unsets the variable. A directory named by the caller is
// used as it is and never removed.
func Setup() (cleanup func(), err error) {
	if os.Getenv(StateDirEnv) != "" {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "axon-bench-")
	if err != nil {
		return nil, err
	}
	if err := os.Setenv(StateDirEnv, dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return func() {
		os.Unsetenv(StateDirEnv)
		os.RemoveAll(dir)
	}, nil
}

func benchStateDir() (string, error) {
	dir := os.Getenv(StateDirEnv)
	if dir == "" {
		return "", fmt.Errorf("%s is not set (impl.Setup sets it; server and client must share it)", StateDirEnv)
	}
	return dir, nil
}

// udsMaxPath is the longest socket path the kernel takes (sun_path is 108
// bytes with the terminating NUL).
const udsMaxPath = 107

// listener returns the listen block of the server's config for addr, and
// what Close must remove afterwards ("" for nothing).
func (a Axon) listener(addr string) (block, tmpDir string, err error) {
	switch a.Transport {
	case "tcp":
		return fmt.Sprintf("{transport: tcp, address: %q}", addr), "", nil
	case "uds":
		// A short directory of our own: the socket path must fit sun_path,
		// and the transport wants a directory owned by this user.
		dir, err := os.MkdirTemp("", "axb-")
		if err != nil {
			return "", "", err
		}
		sock := filepath.Join(dir, "echo.sock")
		if len(sock) > udsMaxPath {
			os.RemoveAll(dir)
			return "", "", fmt.Errorf("socket path %s is %d bytes, over the %d of sun_path; set TMPDIR to a shorter directory", sock, len(sock), udsMaxPath)
		}
		return fmt.Sprintf("{transport: uds, address: %q}", sock), dir, nil
	case "quic":
		dir, err := benchStateDir()
		if err != nil {
			return "", "", err
		}
		return fmt.Sprintf("{transport: quic, address: %q, options: {state_dir: %q}}", addr, dir), "", nil
	}
	return "", "", fmt.Errorf("axon: unknown transport %q", a.Transport)
}

// clientTransport returns the endpoint scheme and the transport a client
// dials with.
func (a Axon) clientTransport() (string, kernel.Transport, error) {
	var tr kernel.Transport
	switch a.Transport {
	case "tcp":
		tr = tcp.New(tcp.DefaultConfig())
	case "uds":
		tr = uds.New(uds.DefaultConfig())
	case "quic":
		dir, err := benchStateDir()
		if err != nil {
			return "", nil, err
		}
		cfg := quic.DefaultConfig()
		cfg.StateDir = dir
		tr = quic.New(cfg)
	default:
		return "", nil, fmt.Errorf("axon: unknown transport %q", a.Transport)
	}
	scheme := a.Transport
	if s, ok := tr.(kernel.Schemer); ok {
		scheme = s.Scheme()
	}
	return scheme, tr, nil
}

func axonCatalog() (*kernel.Catalog, error) {
	return kernel.NewCatalog([]kernel.Factory{
		tcp.Factory, uds.Factory, quic.Factory, native.Factory, grpcproto.Factory, protocodec.Factory, static.Factory,
		files.Factory,
	})
}

// tlsOff is the tls block of a plaintext server.
const tlsOff = `{mode: "off"}`

// tlsBlock returns the tls block of the server's config.
func (a Axon) tlsBlock() (string, error) {
	if !a.TLS {
		return tlsOff, nil
	}
	if a.Transport != "tcp" {
		return "", errTLSTransport
	}
	f, err := benchTLSFiles()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("{mode: mutual, credentials: files, min_version: \"1.3\", ca_file: %q, cert_file: %q, key_file: %q}",
		f.CA, f.ServerCert, f.ServerKey), nil
}

// clientTLS returns the client's TLS: nil without TLS, else mutual TLS 1.3
// with files credentials (loaded once; nothing watches them) that requires
// the server to be tlsServerID.
func (a Axon) clientTLS() (*kernel.TLS, error) {
	if !a.TLS {
		return nil, nil
	}
	if a.Transport != "tcp" {
		return nil, errTLSTransport
	}
	f, err := benchTLSFiles()
	if err != nil {
		return nil, err
	}
	creds, err := files.New(files.Config{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey}, nil)
	if err != nil {
		return nil, fmt.Errorf("axon: client tls: %w", err)
	}
	return &kernel.TLS{Mode: kernel.TLSMutual, Creds: creds, MinVersion: tls.VersionTLS13, ServerIdentity: tlsServerID}, nil
}

type axonServer struct {
	rt     *kernel.Runtime
	tmpDir string // removed on Close, if set
}

func (a Axon) Serve(addr string) (Server, error) {
	tlsBlock, err := a.tlsBlock()
	if err != nil {
		return nil, err
	}
	block, tmpDir, err := a.listener(addr)
	if err != nil {
		return nil, err
	}
	s, err := serveAxon(block, tlsBlock)
	if err != nil {
		if tmpDir != "" {
			os.RemoveAll(tmpDir)
		}
		return nil, err
	}
	s.tmpDir = tmpDir
	return s, nil
}

// serveAxon runs a generation with the echo service, one listener and the
// top-level tls block tlsBlock (a YAML flow mapping). The
// registry is named explicitly: the static one publishes nowhere and keeps
// no state, so nothing but the echo path costs the server anything (the
// kernel's default, the local registry, would write a registry file).
func serveAxon(listenBlock, tlsBlock string) (*axonServer, error) {
	cat, err := axonCatalog()
	if err != nil {
		return nil, err
	}
	type bv = wrapperspb.BytesValue
	svc := kernel.NewService("bench.Echo",
		kernel.Unary("Call", func(_ context.Context, in *bv) (*bv, error) { return in, nil }),
		kernel.BidiStreaming("Stream", func(s kernel.BidiStreamingServer[bv, bv]) error {
			return echoStream(s.Recv, s.Send)
		}),
		kernel.ServerStreaming("Download", func(req *bv, s kernel.ServerStreamingServer[bv]) error {
			return download(s.Context(), req, s.Send)
		}))
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc})
	if err != nil {
		return nil, err
	}
	tree, err := config.LoadBytes("bench", []byte(fmt.Sprintf(`
service: bench
tls: %s
registry: {use: static}
listen: [%s]
`, tlsBlock, listenBlock)), nil)
	if err != nil {
		return nil, err
	}
	cfg, err := kernel.ParseConfig(tree)
	if err != nil {
		return nil, err
	}
	rt := kernel.NewRuntime(cat, table, slog.New(slog.DiscardHandler))
	if err := rt.Apply(context.Background(), cfg); err != nil {
		return nil, err
	}
	return &axonServer{rt: rt}, nil
}

func (s *axonServer) Addr() string {
	_, a := kernel.SplitAddress(s.rt.Endpoints()[0].Address)
	return a
}

func (s *axonServer) Close() error {
	err := s.rt.Shutdown(context.Background())
	if s.tmpDir != "" {
		err = errors.Join(err, os.RemoveAll(s.tmpDir))
	}
	return err
}

type axonClient struct{ c *kernel.Client }

func (a Axon) Dial(addr string, _ int) (Client, error) {
	c, err := a.newClient(addr)
	if err != nil {
		return nil, err
	}
	return &axonClient{c: c}, nil
}

func (a Axon) newClient(addr string) (*kernel.Client, error) {
	conns := 0
	if v := os.Getenv("AXON_BENCH_CONNS"); v != "" {
		conns, _ = strconv.Atoi(v)
	}
	scheme, tr, err := a.clientTransport()
	if err != nil {
		return nil, err
	}
	t, err := a.clientTLS()
	if err != nil {
		return nil, err
	}
	return kernel.NewClient(kernel.ClientOptions{
		Target:           scheme + "://" + addr,
		Transports:       map[string]kernel.Transport{scheme: tr},
		Protocol:         native.New(native.DefaultConfig()),
		Codec:            protocodec.Codec{},
		ConnsPerEndpoint: conns,
		TLS:              t,
	})
}

func (c *axonClient) Call(ctx context.Context, payload []byte) error {
	resp := new(wrapperspb.BytesValue)
	if err := c.c.Invoke(ctx, axonEchoMethod, &wrapperspb.BytesValue{Value: payload}, resp); err != nil {
		return err
	}
	return verify(resp.Value, payload)
}

func (c *axonClient) Close() error { return c.c.Close() }

// axonStreamClient opens streams with kernel.Client.NewStream, through the
// client's (empty) stream interceptor chain and the native protocol.
type axonStreamClient struct{ c *kernel.Client }

// DialStream makes the same client as Dial.
func (a Axon) DialStream(addr string) (StreamClient, error) {
	c, err := a.newClient(addr)
	if err != nil {
		return nil, err
	}
	return axonStreamClient{c: c}, nil
}

func (c axonStreamClient) Bidi(ctx context.Context) (Stream, error) {
	s, err := c.c.NewStream(ctx, streamEchoMethod, kernel.StreamTypes[wrapperspb.BytesValue, wrapperspb.BytesValue]())
	if err != nil {
		return nil, err
	}
	return &pbStream{s: s}, nil
}

func (c axonStreamClient) Download(ctx context.Context, payload []byte, count uint64) (Stream, error) {
	s, err := c.c.NewStream(ctx, downloadMethod, kernel.StreamTypes[wrapperspb.BytesValue, wrapperspb.BytesValue]())
	if err != nil {
		return nil, err
	}
	return openDownload(s, payload, count)
}

func (c axonStreamClient) Close() error { return c.c.Close() }
