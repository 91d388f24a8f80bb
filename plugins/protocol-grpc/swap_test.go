package grpc_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
)

// TestSwapUnderLoad replaces the server behind a listener, as a runtime
// generation swap does (new connections reach the new server, then the old
// one shuts down), while grpc-go clients call continuously: no call fails.
func TestSwapUnderLoad(t *testing.T) {
	svc := kernel.NewService(svcName, kernel.Unary("Echo", func(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) { return in, nil }))
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc})
	if err != nil {
		t.Fatal(err)
	}
	newServer := func() kernel.ServerConn {
		d := kernel.NewDispatcher(table, nil, []kernel.Codec{protocodec.Codec{}}, kernel.Limits{}, slog.New(slog.DiscardHandler))
		return grpcproto.New("grpc", grpcproto.DefaultConfig()).NewServer(d)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var current atomic.Pointer[kernel.ServerConn]
	first := newServer()
	current.Store(&first)
	var served sync.WaitGroup
	served.Add(1)
	go func() {
		defer served.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s := *current.Load()
			served.Add(1)
			go func() { defer served.Done(); s.ServeConn(c) }()
		}
	}()
	cc := dial(t, ln.Addr().String())

	ctx, stop := context.WithCancel(ctxT(t))
	var calls, failed atomic.Int64
	var firstErr atomic.Value
	var load sync.WaitGroup
	for range 8 {
		load.Add(1)
		go func() {
			defer load.Done()
			for ctx.Err() == nil {
				var out wrapperspb.StringValue
				err := cc.Invoke(ctx, mEcho, wrapperspb.String("x"), &out)
				if ctx.Err() != nil {
					return
				}
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	// progress waits until the clients have made 200 more calls.
	progress := func() {
		for n := calls.Load(); calls.Load() < n+200; {
			if ctx.Err() != nil {
				t.Fatal("the load stopped")
			}
			time.Sleep(time.Millisecond)
		}
	}
	old := first
	for range 5 {
		progress()
		next := newServer()
		current.Store(&next)
		if err := old.Shutdown(ctxT(t)); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		old = next
	}
	progress()
	stop()
	load.Wait()
	old.Shutdown(ctxT(t))
	ln.Close()
	served.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d calls failed across 5 swaps; first: %v", failed.Load(), calls.Load(), firstErr.Load())
	}
	t.Logf("%d calls, %d failed", calls.Load(), failed.Load())
}
