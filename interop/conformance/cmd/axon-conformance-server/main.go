// Command axon-conformance-server is the server under test of the ConnectRPC
// conformance runner (connectconformance --mode server): it reads one
// size-delimited ServerCompatRequest from stdin, starts an Axon server of
// ConformanceService on 127.0.0.1 with a port the system picks, serving the
// gRPC and gRPC-Web protocols on one listener, writes the
// ServerCompatResponse to stdout, and serves until SIGTERM or SIGINT. A
// request for TLS gets a listener in TLS server mode (mutual mode when the
// request carries a client certificate) with certificates from a CA made for
// this run, in a temporary directory removed at exit; the response carries
// that CA for the runner's clients to trust.
//
// Usage: axon-conformance-server [--log-level debug|info|warn|error]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/axonrpc/axon/interop/conformance"
	v1 "github.com/axonrpc/axon/interop/conformance/internal/gen/conformancev1"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, stop))
}

// run serves one ServerCompatRequest read from stdin until stop receives,
// and returns the exit status: 0 after a clean stop, 1 when the server could
// not start, 2 for bad arguments.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, stop <-chan os.Signal) int {
	fs := flag.NewFlagSet("axon-conformance-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	level := slog.LevelWarn
	fs.TextVar(&level, "log-level", slog.LevelWarn, "lowest level logged to stderr: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "axon-conformance-server: %v\n", err)
		return 1
	}
	req, err := conformance.ReadRequest(stdin)
	if err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp("", "axon-conformance-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	cfg, caPEM, err := conformance.Config(req, dir, "grpc", "grpc-web")
	if err != nil {
		return fail(err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	srv, err := conformance.Start(ctx, cfg, log)
	cancel()
	if err != nil {
		return fail(err)
	}
	if err := conformance.WriteResponse(stdout, &v1.ServerCompatResponse{Host: srv.Host, Port: srv.Port, PemCert: caPEM}); err != nil {
		srv.Shutdown(context.Background())
		return fail(err)
	}
	<-stop
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintf(stderr, "axon-conformance-server: shutdown: %v\n", err)
	}
	return 0
}
