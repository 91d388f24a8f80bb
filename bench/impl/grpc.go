package impl

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// GRPC is google.golang.org/grpc with default options and insecure
// credentials: ONE ClientConn shared by all callers, the proto codec, and
// wrapperspb.BytesValue as request and response. The service is described by
// hand (no protoc): service bench.Echo, unary method Call.
//
// With TLS set (impl "grpc-tls"), both sides use credentials.NewTLS instead
// of insecure credentials: the server requires and verifies a client
// certificate, both sides require TLS 1.3, and the client presents its
// certificate and verifies the server's against the CA; the files are
// axon-tls's (see benchTLSFiles).
type GRPC struct {
	// TLS turns on mutual TLS.
	TLS bool
}

// Name is "grpc", or "grpc-tls" with TLS.
func (g GRPC) Name() string {
	if g.TLS {
		return "grpc-tls"
	}
	return "grpc"
}

const grpcEchoMethod = "/bench.Echo/Call"

// grpcEchoServer is the handler type of the hand-written service.
type grpcEchoServer interface {
	Call(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
}

type grpcEcho struct{}

func (grpcEcho) Call(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return in, nil
}

func grpcEchoHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.BytesValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(grpcEchoServer).Call(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: grpcEchoMethod}
	handler := func(ctx context.Context, req any) (any, error) {
		return srv.(grpcEchoServer).Call(ctx, req.(*wrapperspb.BytesValue))
	}
	return interceptor(ctx, in, info, handler)
}

// grpcStreamHandler serves bench.Echo/Stream: a new message per receive,
// as generated code does.
func grpcStreamHandler(_ any, stream grpc.ServerStream) error {
	return echoStream(func() (*wrapperspb.BytesValue, error) {
		m := new(wrapperspb.BytesValue)
		if err := stream.RecvMsg(m); err != nil {
			return nil, err
		}
		return m, nil
	}, func(m *wrapperspb.BytesValue) error { return stream.SendMsg(m) })
}

// grpcDownloadHandler serves bench.Echo/Download.
func grpcDownloadHandler(_ any, stream grpc.ServerStream) error {
	req := new(wrapperspb.BytesValue)
	if err := stream.RecvMsg(req); err != nil {
		return err
	}
	return download(stream.Context(), req, func(m *wrapperspb.BytesValue) error { return stream.SendMsg(m) })
}

var grpcEchoDesc = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*grpcEchoServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Call", Handler: grpcEchoHandler}},
	Streams: []grpc.StreamDesc{
		{StreamName: "Stream", Handler: grpcStreamHandler, ServerStreams: true, ClientStreams: true},
		{StreamName: "Download", Handler: grpcDownloadHandler, ServerStreams: true},
	},
	Metadata: "bench/echo.proto",
}

type grpcServer struct {
	s  *grpc.Server
	ln net.Listener
}

func (g GRPC) Serve(addr string) (Server, error) {
	var opts []grpc.ServerOption
	if g.TLS {
		conf, err := serverTLS()
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(conf)))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(&grpcEchoDesc, grpcEcho{})
	go s.Serve(ln) //nolint:errcheck // returns when stopped
	return &grpcServer{s: s, ln: ln}, nil
}

func (g *grpcServer) Addr() string { return g.ln.Addr().String() }

func (g *grpcServer) Close() error {
	g.s.Stop()
	return nil
}

type grpcClient struct {
	cc *grpc.ClientConn
}

func (g GRPC) Dial(addr string, _ int) (Client, error) {
	cc, err := g.dial(addr)
	if err != nil {
		return nil, err
	}
	return grpcClient{cc: cc}, nil
}

// dial makes the one ClientConn of a client and starts connecting.
func (g GRPC) dial(addr string) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if g.TLS {
		conf, err := clientTLS(addr)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(conf)
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	cc.Connect()
	return cc, nil
}

func (gc grpcClient) Call(ctx context.Context, payload []byte) error {
	var resp wrapperspb.BytesValue
	if err := gc.cc.Invoke(ctx, grpcEchoMethod, &wrapperspb.BytesValue{Value: payload}, &resp); err != nil {
		return err
	}
	return verify(resp.Value, payload)
}

func (gc grpcClient) Close() error { return gc.cc.Close() }

// grpcStreamClient opens streams on one ClientConn with default options.
type grpcStreamClient struct{ cc *grpc.ClientConn }

// DialStream makes the same ClientConn as Dial.
func (g GRPC) DialStream(addr string) (StreamClient, error) {
	cc, err := g.dial(addr)
	if err != nil {
		return nil, err
	}
	return grpcStreamClient{cc: cc}, nil
}

var (
	grpcBidiDesc     = grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}
	grpcDownloadDesc = grpc.StreamDesc{StreamName: "Download", ServerStreams: true}
)

func (gc grpcStreamClient) Bidi(ctx context.Context) (Stream, error) {
	s, err := gc.cc.NewStream(ctx, &grpcBidiDesc, streamEchoMethod)
	if err != nil {
		return nil, err
	}
	return &pbStream{s: s}, nil
}

func (gc grpcStreamClient) Download(ctx context.Context, payload []byte, count uint64) (Stream, error) {
	s, err := gc.cc.NewStream(ctx, &grpcDownloadDesc, downloadMethod)
	if err != nil {
		return nil, err
	}
	return openDownload(s, payload, count)
}

func (gc grpcStreamClient) Close() error { return gc.cc.Close() }
