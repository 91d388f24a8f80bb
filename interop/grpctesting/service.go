// Package grpctesting implements grpc.testing.TestService, the service that
// gRPC's cross-language interoperability test clients call, on Axon's kernel
// API. Served over the gRPC protocol plugin, it lets grpc-go's interop client
// (google.golang.org/grpc/interop/client) test Axon as it tests any gRPC
// server. The message types are grpc-go's generated ones.
package grpctesting

import (
	"context"
	"io"
	"time"

	pb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// ServiceName is the full name of the interop test service.
const ServiceName = "grpc.testing.TestService"

// Metadata keys the interop tests ask a server to echo.
const (
	echoInitialKey  = "x-grpc-test-echo-initial"
	echoTrailingKey = "x-grpc-test-echo-trailing-bin"
)

// MaxPayload bounds the payloads a request may ask for, so that a peer
// cannot make the server allocate without limit.
const MaxPayload = 4 << 20

// Desc returns the description of grpc.testing.TestService. UnimplementedCall
// is left out on purpose: the interop test expects UNIMPLEMENTED for it.
func Desc() *kernel.ServiceDesc {
	return kernel.NewService(ServiceName,
		kernel.Unary("EmptyCall", emptyCall),
		kernel.Unary("UnaryCall", unaryCall),
		kernel.Unary("CacheableUnaryCall", unaryCall),
		kernel.ServerStreaming("StreamingOutputCall", streamingOutputCall),
		kernel.ClientStreaming("StreamingInputCall", streamingInputCall),
		kernel.BidiStreaming("FullDuplexCall", fullDuplexCall),
		kernel.BidiStreaming("HalfDuplexCall", halfDuplexCall),
	)
}

func emptyCall(ctx context.Context, _ *pb.Empty) (*pb.Empty, error) {
	echoMetadata(ctx)
	return &pb.Empty{}, nil
}

func unaryCall(ctx context.Context, req *pb.SimpleRequest) (*pb.SimpleResponse, error) {
	echoMetadata(ctx)
	if err := echoStatus(req.GetResponseStatus()); err != nil {
		return nil, err
	}
	p, err := payload(req.GetResponseType(), req.GetResponseSize())
	if err != nil {
		return nil, err
	}
	return &pb.SimpleResponse{Payload: p}, nil
}

func streamingOutputCall(req *pb.StreamingOutputCallRequest, s kernel.ServerStreamingServer[pb.StreamingOutputCallResponse]) error {
	if err := echoStatus(req.GetResponseStatus()); err != nil {
		return err
	}
	return respond(s.Context(), req, s.Send)
}

func streamingInputCall(s kernel.ClientStreamingServer[pb.StreamingInputCallRequest, pb.StreamingInputCallResponse]) error {
	var total int
	for {
		req, err := s.Recv()
		if err == io.EOF {
			return s.SendAndClose(&pb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

func fullDuplexCall(s kernel.BidiStreamingServer[pb.StreamingOutputCallRequest, pb.StreamingOutputCallResponse]) error {
	echoMetadata(s.Context())
	for {
		req, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := echoStatus(req.GetResponseStatus()); err != nil {
			return err
		}
		if err := respond(s.Context(), req, s.Send); err != nil {
			return err
		}
	}
}

// halfDuplexCall reads every request first, then answers them in order.
func halfDuplexCall(s kernel.BidiStreamingServer[pb.StreamingOutputCallRequest, pb.StreamingOutputCallResponse]) error {
	var reqs []*pb.StreamingOutputCallRequest
	for {
		req, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		reqs = append(reqs, req)
	}
	for _, req := range reqs {
		if err := respond(s.Context(), req, s.Send); err != nil {
			return err
		}
	}
	return nil
}

// respond sends one response per response parameter, each after its
// interval.
func respond(ctx context.Context, req *pb.StreamingOutputCallRequest, send func(*pb.StreamingOutputCallResponse) error) error {
	for _, rp := range req.GetResponseParameters() {
		if us := rp.GetIntervalUs(); us > 0 {
			t := time.NewTimer(time.Duration(us) * time.Microsecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return status.FromError(ctx.Err())
			case <-t.C:
			}
		}
		p, err := payload(req.GetResponseType(), rp.GetSize())
		if err != nil {
			return err
		}
		if err := send(&pb.StreamingOutputCallResponse{Payload: p}); err != nil {
			return err
		}
	}
	return nil
}

func payload(t pb.PayloadType, size int32) (*pb.Payload, error) {
	if t != pb.PayloadType_COMPRESSABLE {
		return nil, status.Errorf(status.InvalidArgument, "grpctesting: payload type %v is not supported (want COMPRESSABLE)", t)
	}
	if size < 0 || size > MaxPayload {
		return nil, status.Errorf(status.InvalidArgument, "grpctesting: payload size %d is outside 0..%d", size, MaxPayload)
	}
	return &pb.Payload{Type: t, Body: make([]byte, size)}, nil
}

// echoStatus returns the status a request asks for, or nil.
func echoStatus(s *pb.EchoStatus) error {
	if s == nil || s.GetCode() == 0 {
		return nil
	}
	return status.New(status.Code(s.GetCode()), s.GetMessage())
}

// echoMetadata sends back the metadata the custom_metadata test sends: the
// initial key in the response header, the trailing key in the trailer.
func echoMetadata(ctx context.Context) {
	md := metadata.FromIncomingContext(ctx)
	if v := md.Get(echoInitialKey); v != "" {
		kernel.SetHeader(ctx, metadata.MD{echoInitialKey: {v}})
	}
	if v := md.Get(echoTrailingKey); v != "" {
		kernel.SetTrailer(ctx, metadata.MD{echoTrailingKey: {v}})
	}
}
