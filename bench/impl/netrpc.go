package impl

import (
	"context"
	"net"
	"net/rpc"
)

// NetRPC is Go's net/rpc with its default gob codec: one shared client
// connection, and the server's goroutine per request.
type NetRPC struct{}

func (NetRPC) Name() string { return "netrpc" }

// EchoMsg is the net/rpc request and response.
type EchoMsg struct {
	Data []byte
}

// EchoService is the net/rpc receiver, registered as "Echo".
type EchoService struct{}

// Call echoes the request.
func (EchoService) Call(req *EchoMsg, resp *EchoMsg) error {
	resp.Data = req.Data
	return nil
}

func (NetRPC) Serve(addr string) (Server, error) {
	srv := rpc.NewServer()
	if err := srv.RegisterName("Echo", EchoService{}); err != nil {
		return nil, err
	}
	return listenTCP(addr, func(c net.Conn) { srv.ServeConn(c) })
}

type netrpcClient struct {
	c *rpc.Client
}

func (NetRPC) Dial(addr string, _ int) (Client, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return netrpcClient{c: rpc.NewClient(conn)}, nil
}

func (nc netrpcClient) Call(ctx context.Context, payload []byte) error {
	var resp EchoMsg
	call := nc.c.Go("Echo.Call", &EchoMsg{Data: payload}, &resp, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
		if call.Error != nil {
			return call.Error
		}
		return verify(resp.Data, payload)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (nc netrpcClient) Close() error { return nc.c.Close() }
