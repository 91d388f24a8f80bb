package impl

import "fmt"

// AxonGRPC is Axon serving gRPC (plugins/protocol-grpc: net/http's h2c
// server dispatching to Axon's handlers) to the grpc impl's client: grpc-go
// with default options, ONE ClientConn shared by all callers. The server is
// built from a config like the axon impl's, with `protocols: [grpc]` on its
// TCP listener, the proto codec and wrapperspb.BytesValue, so the row beside
// grpc compares only the two servers.
type AxonGRPC struct{}

func (AxonGRPC) Name() string { return "axon-grpc" }

func (AxonGRPC) Serve(addr string) (Server, error) {
	return serveAxon(fmt.Sprintf("{transport: tcp, address: %q, protocols: [grpc]}", addr), tlsOff)
}

func (AxonGRPC) Dial(addr string, callers int) (Client, error) { return GRPC{}.Dial(addr, callers) }

// DialStream is the grpc impl's streaming client.
func (AxonGRPC) DialStream(addr string) (StreamClient, error) { return GRPC{}.DialStream(addr) }
