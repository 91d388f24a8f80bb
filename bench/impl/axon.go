package impl

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	static "github.com/axonrpc/axon/plugins/registry-static"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// Axon is the native Axon protocol over TCP, composed the way `axon serve`
// composes it: a runtime generation built from a config, the proto codec, and
// wrapperspb.BytesValue as request and response (like the grpc impl). The
// client uses the config's default connections per endpoint unless
// AXON_BENCH_CONNS sets another number.
type Axon struct{}

func (Axon) Name() string { return "axon" }

const axonEchoMethod = "/bench.Echo/Call"

func axonCatalog() (*kernel.Catalog, error) {
	return kernel.NewCatalog([]kernel.Factory{tcp.Factory, native.Factory, protocodec.Factory, static.Factory})
}

type axonServer struct {
	rt *kernel.Runtime
}

func (Axon) Serve(addr string) (Server, error) {
	cat, err := axonCatalog()
	if err != nil {
		return nil, err
	}
	svc := kernel.NewService("bench.Echo", kernel.Unary("Call",
		func(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) { return in, nil }))
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc})
	if err != nil {
		return nil, err
	}
	tree, err := config.LoadBytes("bench", []byte(fmt.Sprintf(`
service: bench
tls: {mode: "off"}
listen: [{transport: tcp, address: %q}]
`, addr)), nil)
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

func (s *axonServer) Close() error { return s.rt.Shutdown(context.Background()) }

type axonClient struct{ c *kernel.Client }

func (Axon) Dial(addr string, _ int) (Client, error) {
	conns := 0
	if v := os.Getenv("AXON_BENCH_CONNS"); v != "" {
		conns, _ = strconv.Atoi(v)
	}
	c, err := kernel.NewClient(kernel.ClientOptions{
		Target:           "tcp://" + addr,
		Transports:       map[string]kernel.Transport{"tcp": tcp.New(tcp.DefaultConfig())},
		Protocol:         native.New(native.DefaultConfig()),
		Codec:            protocodec.Codec{},
		ConnsPerEndpoint: conns,
	})
	if err != nil {
		return nil, err
	}
	return &axonClient{c: c}, nil
}

func (c *axonClient) Call(ctx context.Context, payload []byte) error {
	resp := new(wrapperspb.BytesValue)
	if err := c.c.Invoke(ctx, axonEchoMethod, &wrapperspb.BytesValue{Value: payload}, resp); err != nil {
		return err
	}
	return verify(resp.Value, payload)
}

func (c *axonClient) Close() error { return c.c.Close() }
