package grpc_test

import (
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// BenchmarkGRPCGoUnary is one grpc-go unary call to the protocol in this
// process, one call in flight, 1 KiB each way. Profile it with
// -cpuprofile; count system calls with strace -f -c on the test binary and
// -test.benchtime 2000x.
func BenchmarkGRPCGoUnary(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	cc := dial(b, f.addr)
	ctx := b.Context()
	req := wrapperspb.String(string(make([]byte, 1024)))
	b.ReportAllocs()
	for b.Loop() {
		if err := cc.Invoke(ctx, mEcho, req, new(wrapperspb.StringValue)); err != nil {
			b.Fatal(err)
		}
	}
}
