package grpc_test

import (
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// BenchmarkGRPCGoUnary is one grpc-go unary call to the protocol in this
// process, one call in flight.
func BenchmarkGRPCGoUnary(b *testing.B) {
	f := newFixture(&testing.T{}, fixtureOpts{})
	defer f.close(&testing.T{})
	cc := dial(&testing.T{}, f.addr)
	defer cc.Close()
	ctx := b.Context()
	req := wrapperspb.String(string(make([]byte, 1024)))
	b.ReportAllocs()
	for b.Loop() {
		if err := cc.Invoke(ctx, mEcho, req, new(wrapperspb.StringValue)); err != nil {
			b.Fatal(err)
		}
	}
}
