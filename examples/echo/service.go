// Package echo is the example service that `axon serve` runs: its messages
// are generated from echo.proto, its handlers are registered through the
// kernel's typed API, and Module serves it in an Axon application.
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
const ServiceName = "axon.example.v1.Echo"

// Server implements the Echo service. It holds no state and is safe for
// concurrent use.
type Server struct{}

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

// NewService describes s as the Echo service.
func NewService(s Server) *kernel.ServiceDesc {
	return kernel.NewService(ServiceName,
		kernel.Unary("Say", s.Say),
		kernel.Unary("Summarize", s.Summarize),
	)
}

// Module serves the Echo service in an Axon application.
var Module = fx.Module("example.echo", kernel.ProvideService(func() *kernel.ServiceDesc { return NewService(Server{}) }))
