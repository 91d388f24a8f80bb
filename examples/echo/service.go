// Package echo is the example service that `axon serve` runs: its messages
// and typed stubs are generated from echo.proto (make generate), Server
// implements echopb.EchoServer, and Module serves it in an Axon application.
//
// To write a service of your own, copy this folder, edit the .proto, run
// make generate, and implement the generated XServer interface.
package echo

import (
	"context"
	"io"
	"sort"
	"strings"

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

// Expand sends the words of the request's text, one per response, in order;
// words are separated by white space. A text without words is
// INVALID_ARGUMENT, and nothing is sent.
func (Server) Expand(req *echopb.SayRequest, stream kernel.ServerStreamingServer[echopb.SayResponse]) error {
	words := strings.Fields(req.GetText())
	if len(words) == 0 {
		return status.New(status.InvalidArgument, "text has no words")
	}
	for _, w := range words {
		if err := stream.Send(&echopb.SayResponse{Text: w}); err != nil {
			return err
		}
	}
	return nil
}

// Collect receives requests until the client half-closes and answers with
// their texts joined in order, separated by one space; no requests give an
// empty text. So Collect undoes Expand.
func (Server) Collect(stream kernel.ClientStreamingServer[echopb.SayRequest, echopb.SayResponse]) error {
	var texts []string
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&echopb.SayResponse{Text: strings.Join(texts, " ")})
		}
		if err != nil {
			return err
		}
		texts = append(texts, req.GetText())
	}
}

// Chat answers each request as it arrives, as Say does, until the client
// half-closes; an empty text ends the call with INVALID_ARGUMENT.
func (s Server) Chat(stream kernel.BidiStreamingServer[echopb.SayRequest, echopb.SayResponse]) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := s.Say(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// Module serves the Echo service in an Axon application.
var Module = fx.Module("example.echo", kernel.ProvideService(func() *kernel.ServiceDesc {
	return echopb.NewEchoService(Server{})
}))
