package e2e_test

import (
	"context"
	"strings"
	"testing"

	"github.com/axonrpc/axon/examples/echo/echopb"
)

// BenchmarkUnaryEcho measures an in-process round trip over TCP loopback with
// a 1 KiB payload: the kernel client and a Runtime-served handler, with the
// allocations of both sides counted together.
func BenchmarkUnaryEcho(b *testing.B) {
	srv := startServer(b, srvConf{})
	benchUnaryEcho(b, func(b *testing.B, conns int) invoker { return newClient(b, srv.addr(), conns) })
}

// benchUnaryEcho runs the serial (one connection) and parallel (two
// connections, 8 goroutines per CPU) 1 KiB echo benchmarks with clients
// from dial, whose connections are opened before the timing.
func benchUnaryEcho(b *testing.B, dial func(b *testing.B, conns int) invoker) {
	req := &echopb.SayRequest{Text: strings.Repeat("a", 1024)}
	// call reports a failure with Error, not Fatal: it also runs on
	// RunParallel's goroutines.
	call := func(b *testing.B, c invoker, resp *echopb.SayResponse) bool {
		resp.Reset()
		if err := c.Invoke(context.Background(), mEcho, req, resp); err != nil {
			b.Error(err)
			return false
		}
		if len(resp.GetText()) != 1024 {
			b.Errorf("response of %d bytes", len(resp.GetText()))
			return false
		}
		return true
	}
	b.Run("serial", func(b *testing.B) {
		c := dial(b, 1)
		mustSay(b, c, mEcho, "dial outside the timing")
		b.ReportAllocs()
		b.SetBytes(2 * 1024)
		var resp echopb.SayResponse
		for b.Loop() {
			if !call(b, c, &resp) {
				return
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		c := dial(b, 2)
		for range 4 {
			mustSay(b, c, mEcho, "dial outside the timing")
		}
		b.ReportAllocs()
		b.SetBytes(2 * 1024)
		b.SetParallelism(8)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var resp echopb.SayResponse
			for pb.Next() {
				if !call(b, c, &resp) {
					return
				}
			}
		})
	})
}
