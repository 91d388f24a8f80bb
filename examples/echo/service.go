// Package echo is the example service that `axon serve` runs: its messages
// and typed stubs are generated from echo.proto (make generate), Server
// implements echopb.EchoServer, and Module serves it in an Axon application.
//
// To write a service of your own, copy this folder, edit the .proto, run
// make generate, and implement the generated XServer interface.
package echo

import (
	"context"
	"sort"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
)

// ServiceName is the full protobuf name of the service.
const ServiceName = echopb.Echo_ServiceName

// Server implements the Echo service. It holds no state and is safe for
// concurrent use.
type Server struct {
	// Methods added to echo.proto answer UNIMPLEMENTED until written.
	echopb.UnimplementedEchoServer
}

var _ echopb.EchoServer = Server{}

// Say returns the request's text; an empty text is INVALID_ARGUMENT.
func (Server) Say(_ context.Context, req *echopb.SayRequest) (*echopb.SayResponse, error) {
	if req.GetText() == "" {
		return nil, status.New(status.InvalidArgument, "text is empty")
	}
	return &echopb.SayResponse{Text: req.GetText()}, nil
}

// Summarize totals an order's items and lists its tag keys.
func (Server) Summarize(_ context.Context, o *echopb.Order) (*echopb.OrderSummary, error) {
	sum := &echopb.OrderSummary{Id: o.GetId(), ItemCount: int32(len(o.GetItems()))}
	for _, it := range o.GetItems() {
		sum.Total += int64(it.GetQuantity()) * it.GetPrice()
	}
	if a := o.GetCustomer().GetAddress(); a != nil {
		sum.ShipTo = a.GetCity() + ", " + a.GetCountry()
	}
	for k := range o.GetTags() {
		sum.TagKeys = append(sum.TagKeys, k)
	}
	sort.Strings(sum.TagKeys)
	return sum, nil
}

// Module serves the Echo service in an Axon application.
var Module = fx.Module("example.echo", kernel.ProvideService(func() *kernel.ServiceDesc {
	return echopb.NewEchoService(Server{})
}))
