// Package reflection serves gRPC server reflection (grpc.reflection.v1 and
// v1alpha) for every service of an Axon server, so that tools such as
// grpcurl can list and call them without .proto files. Descriptors come from
// the protobuf registry that generated code fills (protoregistry.GlobalFiles);
// a service registered without generated protobuf code is listed, but its
// descriptor cannot be served.
//
// The protocol logic is grpc-go's reflection package, used through its public
// API; this package adapts Axon's streams and service table to it.
package reflection

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	grpcmd "google.golang.org/grpc/metadata"
	grpcreflection "google.golang.org/grpc/reflection"
	v1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	v1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
)

// Service names of the two reflection versions.
const (
	V1Name      = "grpc.reflection.v1.ServerReflection"
	V1AlphaName = "grpc.reflection.v1alpha.ServerReflection"
)

// Server answers reflection requests about the services of one service
// table. It is safe for concurrent use.
type Server struct {
	table   atomic.Pointer[kernel.ServiceTable]
	v1      v1.ServerReflectionServer
	v1alpha v1alpha.ServerReflectionServer
}

// New returns a server that lists no services until Attach.
func New() *Server {
	s := &Server{}
	opts := grpcreflection.ServerOptions{
		Services:           (*services)(s),
		DescriptorResolver: protoregistry.GlobalFiles,
		ExtensionResolver:  protoregistry.GlobalTypes,
	}
	s.v1 = grpcreflection.NewServerV1(opts)
	s.v1alpha = grpcreflection.NewServer(opts)
	return s
}

// Attach gives s the services it describes. fx calls it once the service
// table exists.
func (s *Server) Attach(t *kernel.ServiceTable) { s.table.Store(t) }

// services lists the table's services in the form grpc-go's reflection
// asks for.
type services Server

func (s *services) GetServiceInfo() map[string]grpc.ServiceInfo {
	out := map[string]grpc.ServiceInfo{}
	t := (*Server)(s).table.Load()
	if t == nil {
		return out
	}
	for _, d := range t.Services() {
		info := grpc.ServiceInfo{}
		for _, m := range d.Methods {
			info.Methods = append(info.Methods, grpc.MethodInfo{Name: m.Name, IsClientStream: m.ClientStreams, IsServerStream: m.ServerStreams})
		}
		out[d.Name] = info
	}
	return out
}

// Descs returns the descriptions of both reflection services.
func (s *Server) Descs() []*kernel.ServiceDesc {
	return []*kernel.ServiceDesc{s.V1Desc(), s.V1AlphaDesc()}
}

// V1Desc returns the description of grpc.reflection.v1.ServerReflection.
func (s *Server) V1Desc() *kernel.ServiceDesc {
	return kernel.NewService(V1Name, kernel.BidiStreaming("ServerReflectionInfo",
		func(st kernel.BidiStreamingServer[v1.ServerReflectionRequest, v1.ServerReflectionResponse]) error {
			return s.v1.ServerReflectionInfo(stream[v1.ServerReflectionRequest, v1.ServerReflectionResponse]{st.ServerStream})
		}))
}

// V1AlphaDesc returns the description of
// grpc.reflection.v1alpha.ServerReflection.
func (s *Server) V1AlphaDesc() *kernel.ServiceDesc {
	return kernel.NewService(V1AlphaName, kernel.BidiStreaming("ServerReflectionInfo",
		func(st kernel.BidiStreamingServer[v1alpha.ServerReflectionRequest, v1alpha.ServerReflectionResponse]) error {
			return s.v1alpha.ServerReflectionInfo(stream[v1alpha.ServerReflectionRequest, v1alpha.ServerReflectionResponse]{st.ServerStream})
		}))
}

// stream presents an Axon server stream as the grpc-go stream that the
// reflection implementation reads and writes.
type stream[Req, Resp any] struct{ s kernel.ServerStream }

func (a stream[Req, Resp]) Context() context.Context { return a.s.Context() }
func (a stream[Req, Resp]) SendMsg(m any) error      { return a.s.SendMsg(m) }
func (a stream[Req, Resp]) RecvMsg(m any) error      { return a.s.RecvMsg(m) }
func (a stream[Req, Resp]) Send(m *Resp) error       { return a.s.SendMsg(m) }

func (a stream[Req, Resp]) Recv() (*Req, error) {
	m := new(Req)
	if err := a.s.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

func (a stream[Req, Resp]) SetHeader(md grpcmd.MD) error {
	return kernel.SetHeader(a.s.Context(), metadata.MD(md))
}

func (a stream[Req, Resp]) SendHeader(md grpcmd.MD) error { return a.s.SendHeader(metadata.MD(md)) }

func (a stream[Req, Resp]) SetTrailer(md grpcmd.MD) {
	kernel.SetTrailer(a.s.Context(), metadata.MD(md))
}
