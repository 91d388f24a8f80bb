package grpc_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
)

// countingConn counts the writes (system calls) the server makes.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// BenchmarkGRPCGoUnary is one grpc-go unary call to the protocol in this
// process, one call in flight, 1 KiB each way; it reports the server's
// write system calls per call. Profile it with -cpuprofile; count all
// system calls with strace -f -c on the test binary and
// -test.benchtime 2000x.
func BenchmarkGRPCGoUnary(b *testing.B) {
	svc := kernel.NewService(svcName, kernel.Unary("Echo", func(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) { return in, nil }))
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc})
	if err != nil {
		b.Fatal(err)
	}
	d := kernel.NewDispatcher(table, nil, []kernel.Codec{protocodec.Codec{}}, kernel.Limits{}, slog.New(slog.DiscardHandler))
	srv := grpcproto.New("grpc", grpcproto.DefaultConfig()).NewServer(d)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var writes atomic.Int64
	var served sync.WaitGroup
	served.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			served.Go(func() { srv.ServeConn(countingConn{c, &writes}) })
		}
	})
	cc := dial(b, ln.Addr().String())
	ctx := b.Context()
	req := wrapperspb.String(string(make([]byte, 1024)))
	if err := cc.Invoke(ctx, mEcho, req, new(wrapperspb.StringValue)); err != nil { // connect
		b.Fatal(err)
	}
	b.ReportAllocs()
	writes.Store(0)
	for b.Loop() {
		if err := cc.Invoke(ctx, mEcho, req, new(wrapperspb.StringValue)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(writes.Load())/float64(b.N), "server-writes/op")
	cc.Close()
	srv.Shutdown(ctx)
	ln.Close()
	served.Wait()
}
