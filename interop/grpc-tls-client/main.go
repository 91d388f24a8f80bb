// Command grpc-tls-client runs grpc-go's own interop test cases
// (google.golang.org/grpc/interop, the code behind grpc-go's interop client)
// over mutual TLS: it dials with a client certificate, which grpc-go's
// interop client binary has no flag for. Everything past the dial is
// grpc-go's: the channel, the HTTP/2 transport and each case's checks, which
// exit non-zero on the first mismatch.
//
//	grpc-tls-client -server_host 127.0.0.1 -server_port PORT \
//	    -ca_file ca.pem -cert_file cert.pem -key_file key.pem -test_case large_unary
//
// It is its own module so that the interop package's dependencies (OAuth2,
// ORCA) stay out of Axon's go.mod.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// cases maps the interop test case names this client runs to grpc-go's
// implementations of them.
var cases = map[string]func(context.Context, *grpc.ClientConn){
	"empty_unary": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoEmptyUnaryCall(ctx, testgrpc.NewTestServiceClient(c))
	},
	"large_unary": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoLargeUnaryCall(ctx, testgrpc.NewTestServiceClient(c))
	},
	"client_streaming": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoClientStreaming(ctx, testgrpc.NewTestServiceClient(c))
	},
	"server_streaming": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoServerStreaming(ctx, testgrpc.NewTestServiceClient(c))
	},
	"ping_pong": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoPingPong(ctx, testgrpc.NewTestServiceClient(c))
	},
	"empty_stream": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoEmptyStream(ctx, testgrpc.NewTestServiceClient(c))
	},
	"timeout_on_sleeping_server": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoTimeoutOnSleepingServer(ctx, testgrpc.NewTestServiceClient(c))
	},
	"cancel_after_begin": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoCancelAfterBegin(ctx, testgrpc.NewTestServiceClient(c))
	},
	"cancel_after_first_response": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoCancelAfterFirstResponse(ctx, testgrpc.NewTestServiceClient(c))
	},
	"custom_metadata": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoCustomMetadata(ctx, testgrpc.NewTestServiceClient(c))
	},
	"status_code_and_message": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoStatusCodeAndMessage(ctx, testgrpc.NewTestServiceClient(c))
	},
	"special_status_message": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoSpecialStatusMessage(ctx, testgrpc.NewTestServiceClient(c))
	},
	"unimplemented_method": func(ctx context.Context, c *grpc.ClientConn) { interop.DoUnimplementedMethod(ctx, c) },
	"unimplemented_service": func(ctx context.Context, c *grpc.ClientConn) {
		interop.DoUnimplementedService(ctx, testgrpc.NewUnimplementedServiceClient(c))
	},
}

func main() {
	host := flag.String("server_host", "127.0.0.1", "the server's host")
	port := flag.Int("server_port", 0, "the server's port")
	override := flag.String("server_host_override", "", "the name to verify the server's certificate against (default: server_host)")
	caFile := flag.String("ca_file", "", "PEM file of the CA that issued the server's certificate")
	certFile := flag.String("cert_file", "", "PEM file of the client's certificate chain")
	keyFile := flag.String("key_file", "", "PEM file of the client's private key")
	testCase := flag.String("test_case", "large_unary", "the interop test case to run")
	flag.Parse()

	run, ok := cases[*testCase]
	if !ok {
		fail(fmt.Errorf("unknown test case %q", *testCase))
	}
	conf, err := tlsConfig(*caFile, *certFile, *keyFile, *override)
	if err != nil {
		fail(err)
	}
	conn, err := grpc.NewClient(net.JoinHostPort(*host, strconv.Itoa(*port)),
		grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	run(context.Background(), conn)
}

// tlsConfig trusts only the CA in caFile and presents the certificate in
// certFile and keyFile; TLS 1.3, as a mutual-TLS listener requires.
func tlsConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("-ca_file, -cert_file and -key_file are required")
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "grpc-tls-client: %v\n", err)
	os.Exit(2)
}
