// Package conformance implements connectrpc.conformance.v1.ConformanceService,
// the service the ConnectRPC conformance suite calls on a server under test,
// against Axon's kernel API: hand-built method descriptors, kernel.SetHeader
// and SetTrailer for response metadata, ServerStream.SendHeader, and status
// errors whose details travel as a google.rpc.Status. Each request says how
// to answer (response data, headers, trailers, an error, a delay), and each
// answer echoes what the server saw (request headers, timeout, requests).
package conformance

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	v1 "github.com/axonrpc/axon/interop/conformance/internal/gen/conformancev1"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// ServiceName is the full protobuf name of the conformance service.
const ServiceName = "connectrpc.conformance.v1.ConformanceService"

// DetailsTrailer is the trailer key that carries an error's details: a
// marshalled google.rpc.Status whose code and message match the error. The
// gRPC and gRPC-Web protocols send it as grpc-status-details-bin; other
// protocols pass it on as trailer metadata.
const DetailsTrailer = "grpc-status-details-bin"

// NewService returns the description of ConformanceService. Unimplemented is
// deliberately left out, so that the server answers it with UNIMPLEMENTED as
// it would any unknown method. IdempotentUnary is served like Unary (it
// differs only for the Connect protocol's GET requests).
func NewService() *kernel.ServiceDesc {
	idem := kernel.Unary("IdempotentUnary", func(ctx context.Context, req *v1.IdempotentUnaryRequest) (*v1.IdempotentUnaryResponse, error) {
		p, err := unary(ctx, req.GetResponseDefinition(), []proto.Message{req})
		if err != nil {
			return nil, err
		}
		return &v1.IdempotentUnaryResponse{Payload: p}, nil
	})
	idem.Idempotent = true
	return kernel.NewService(ServiceName,
		kernel.Unary("Unary", func(ctx context.Context, req *v1.UnaryRequest) (*v1.UnaryResponse, error) {
			p, err := unary(ctx, req.GetResponseDefinition(), []proto.Message{req})
			if err != nil {
				return nil, err
			}
			return &v1.UnaryResponse{Payload: p}, nil
		}),
		idem,
		kernel.ServerStreaming("ServerStream", serverStream),
		kernel.ClientStreaming("ClientStream", clientStream),
		kernel.BidiStreaming("BidiStream", bidiStream),
	)
}

// unary answers a unary or client-streaming call whose requests were reqs,
// as def says: it sets the response headers and trailers, waits the delay,
// and returns either a payload with the data and the request info, or def's
// error with the request info appended to its details.
func unary(ctx context.Context, def *v1.UnaryResponseDefinition, reqs []proto.Message) (*v1.ConformancePayload, error) {
	info, err := requestInfo(ctx, reqs)
	if err != nil {
		return nil, err
	}
	if def != nil {
		if err := setMetadata(ctx, def.GetResponseHeaders(), def.GetResponseTrailers()); err != nil {
			return nil, err
		}
	}
	if err := sleep(ctx, def.GetResponseDelayMs()); err != nil {
		return nil, err
	}
	if e := def.GetError(); e != nil {
		return nil, callError(ctx, e, info)
	}
	return &v1.ConformancePayload{Data: def.GetResponseData(), RequestInfo: info}, nil
}

func clientStream(s kernel.ClientStreamingServer[v1.ClientStreamRequest, v1.ClientStreamResponse]) error {
	var reqs []proto.Message
	var def *v1.UnaryResponseDefinition
	for {
		req, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if len(reqs) == 0 {
			def = req.GetResponseDefinition()
		}
		reqs = append(reqs, req)
	}
	p, err := unary(s.Context(), def, reqs)
	if err != nil {
		return err
	}
	return s.SendAndClose(&v1.ClientStreamResponse{Payload: p})
}

func serverStream(req *v1.ServerStreamRequest, s kernel.ServerStreamingServer[v1.ServerStreamResponse]) error {
	ctx := s.Context()
	info, err := requestInfo(ctx, []proto.Message{req})
	if err != nil {
		return err
	}
	def := req.GetResponseDefinition()
	if def == nil {
		return nil
	}
	if err := setMetadata(ctx, def.GetResponseHeaders(), def.GetResponseTrailers()); err != nil {
		return err
	}
	if err := s.SendHeader(nil); err != nil {
		return err
	}
	for i, data := range def.GetResponseData() {
		p := &v1.ConformancePayload{Data: data}
		if i == 0 {
			p.RequestInfo = info
		}
		if err := sleep(ctx, def.GetResponseDelayMs()); err != nil {
			return err
		}
		if err := s.Send(&v1.ServerStreamResponse{Payload: p}); err != nil {
			return err
		}
	}
	if e := def.GetError(); e != nil {
		if len(def.GetResponseData()) > 0 {
			info = nil
		}
		return callError(ctx, e, info)
	}
	return nil
}

// bidiStream serves both duplex modes, which the first request chooses. Full
// duplex answers each request as it arrives with the next response, echoing
// the requests received since the previous response (responses left when
// the client half-closes go out after, echoing nothing), and fails at once
// with the definition's error when a request finds no response left; half
// duplex reads every request first and then sends all responses, the first
// echoing every request. Either way the error, if any, ends the call.
func bidiStream(s kernel.BidiStreamingServer[v1.BidiStreamRequest, v1.BidiStreamResponse]) error {
	ctx := s.Context()
	var (
		def    *v1.StreamResponseDefinition
		full   bool
		first  = true
		sent   int             // responses sent
		reqs   []proto.Message // requests not yet echoed
		header bool            // response header sent
	)
	sendHeader := func() error {
		if header {
			return nil
		}
		header = true
		return s.SendHeader(nil)
	}
	send := func() error {
		data := def.GetResponseData()[sent]
		p := &v1.ConformancePayload{Data: data}
		if sent == 0 {
			info, err := requestInfo(ctx, reqs)
			if err != nil {
				return err
			}
			p.RequestInfo = info
		} else if full && len(reqs) > 0 {
			p.RequestInfo = &v1.ConformancePayload_RequestInfo{}
			if err := appendRequests(p.RequestInfo, reqs); err != nil {
				return err
			}
		}
		if err := sleep(ctx, def.GetResponseDelayMs()); err != nil {
			return err
		}
		if err := s.Send(&v1.BidiStreamResponse{Payload: p}); err != nil {
			return err
		}
		sent++
		reqs = nil
		return nil
	}
	fail := func() error {
		var info *v1.ConformancePayload_RequestInfo
		if sent == 0 {
			var err error
			if info, err = requestInfo(ctx, reqs); err != nil {
				return err
			}
		}
		return callError(ctx, def.GetError(), info)
	}
	for {
		req, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		reqs = append(reqs, req)
		if first {
			first = false
			def, full = req.GetResponseDefinition(), req.GetFullDuplex()
			if def != nil {
				if err := setMetadata(ctx, def.GetResponseHeaders(), def.GetResponseTrailers()); err != nil {
					return err
				}
				if full {
					if err := sendHeader(); err != nil {
						return err
					}
				}
			}
		}
		if !full {
			continue
		}
		if sent < len(def.GetResponseData()) {
			if err := send(); err != nil {
				return err
			}
		} else if def.GetError() != nil {
			return fail()
		}
	}
	if def == nil {
		return nil
	}
	if err := sendHeader(); err != nil {
		return err
	}
	for sent < len(def.GetResponseData()) {
		if err := send(); err != nil {
			return err
		}
	}
	if def.GetError() != nil {
		return fail()
	}
	return nil
}

// requestInfo describes what the server saw of a call: its request metadata
// (keys sorted), its remaining time to the deadline, and reqs.
func requestInfo(ctx context.Context, reqs []proto.Message) (*v1.ConformancePayload_RequestInfo, error) {
	info := &v1.ConformancePayload_RequestInfo{}
	md := metadata.FromIncomingContext(ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		info.RequestHeaders = append(info.RequestHeaders, &v1.Header{Name: k, Value: md[k]})
	}
	if d, ok := ctx.Deadline(); ok {
		ms := time.Until(d).Milliseconds()
		info.TimeoutMs = &ms
	}
	if err := appendRequests(info, reqs); err != nil {
		return nil, err
	}
	return info, nil
}

func appendRequests(info *v1.ConformancePayload_RequestInfo, reqs []proto.Message) error {
	for _, r := range reqs {
		a, err := anypb.New(r)
		if err != nil {
			return status.Errorf(status.Internal, "conformance: echo request: %v", err)
		}
		info.Requests = append(info.Requests, a)
	}
	return nil
}

// setMetadata adds the response headers and trailers of a definition to the
// call in ctx.
func setMetadata(ctx context.Context, headers, trailers []*v1.Header) error {
	if md := toMD(headers); md != nil {
		if err := kernel.SetHeader(ctx, md); err != nil {
			return fmt.Errorf("conformance: set response headers: %w", err)
		}
	}
	if md := toMD(trailers); md != nil {
		if err := kernel.SetTrailer(ctx, md); err != nil {
			return fmt.Errorf("conformance: set response trailers: %w", err)
		}
	}
	return nil
}

func toMD(hs []*v1.Header) metadata.MD {
	if len(hs) == 0 {
		return nil
	}
	md := make(metadata.MD, len(hs))
	for _, h := range hs {
		md.Append(h.GetName(), h.GetValue()...)
	}
	return md
}

// sleep waits ms milliseconds, or until the call ends, when it returns the
// call's status (CANCELLED or DEADLINE_EXCEEDED).
func sleep(ctx context.Context, ms uint32) error {
	if ms == 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromError(ctx.Err())
	}
}

// callError returns the status error e describes, with info (when not nil)
// appended to e's details. The details go in the DetailsTrailer of the call
// in ctx. An error with no code (CODE_UNSPECIFIED) is UNKNOWN: a status
// error must not read as OK.
func callError(ctx context.Context, e *v1.Error, info *v1.ConformancePayload_RequestInfo) error {
	details := e.GetDetails()
	if info != nil {
		a, err := anypb.New(info)
		if err != nil {
			return status.Errorf(status.Internal, "conformance: encode request info: %v", err)
		}
		details = append(details[:len(details):len(details)], a)
	}
	code := status.Code(e.GetCode())
	if code == status.OK {
		code = status.Unknown
	}
	if len(details) > 0 {
		b, err := statusProto(code, e.GetMessage(), details)
		if err != nil {
			return status.Errorf(status.Internal, "conformance: encode error details: %v", err)
		}
		if err := kernel.SetTrailer(ctx, metadata.MD{DetailsTrailer: {string(b)}}); err != nil {
			return fmt.Errorf("conformance: set error details: %w", err)
		}
	}
	return status.New(code, e.GetMessage())
}

// statusProto returns the encoding of a google.rpc.Status with code, msg and
// details (fields 1, 2 and 3). It is written out here so that the module
// needs no generated google.rpc package.
func statusProto(code status.Code, msg string, details []*anypb.Any) ([]byte, error) {
	var b []byte
	if code != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(code))
	}
	if msg != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, msg)
	}
	for _, d := range details {
		m, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
		if err != nil {
			return nil, err
		}
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	return b, nil
}

// ParseStatusProto decodes a google.rpc.Status, such as the value of
// DetailsTrailer. Unknown fields are skipped.
func ParseStatusProto(b []byte) (code status.Code, msg string, details []*anypb.Any, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, "", nil, fmt.Errorf("conformance: google.rpc.Status: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, "", nil, fmt.Errorf("conformance: google.rpc.Status code: %w", protowire.ParseError(n))
			}
			code, b = status.Code(v), b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return 0, "", nil, fmt.Errorf("conformance: google.rpc.Status message: %w", protowire.ParseError(n))
			}
			msg, b = v, b[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, "", nil, fmt.Errorf("conformance: google.rpc.Status details: %w", protowire.ParseError(n))
			}
			a := new(anypb.Any)
			if err := proto.Unmarshal(v, a); err != nil {
				return 0, "", nil, fmt.Errorf("conformance: google.rpc.Status details: %w", err)
			}
			details, b = append(details, a), b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return 0, "", nil, fmt.Errorf("conformance: google.rpc.Status: %w", protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return code, msg, details, nil
}
