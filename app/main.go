package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/fx"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
)

const usage = `usage:
  axon serve --config FILE [--watch=false] serve the configured services until SIGINT or SIGTERM;
                                           a changed config file (or SIGHUP) is applied as a new generation
  axon call  --config FILE [--target T] [--timeout D] METHOD JSON
                                           call METHOD (pkg.Service/Method) with a JSON request;
                                           a server-streaming METHOD prints one JSON line per response
  axon load  --config FILE [--target T] [--duration D] [--concurrency N] METHOD JSON
                                           call METHOD in a closed loop and report calls,
                                           failures and latency; exit 1 if any call failed
  axon dev-cert --config FILE --out DIR [--name NAME]
                                           write a certificate from the config's dev credentials
                                           (ca.pem, cert.pem, key.pem) for tools such as grpcurl

Environment variables AXON_<KEY>__<SUBKEY>=value override the config file.
`

// Main runs the axon command with args (without the program name) and the
// service modules to serve, and returns the process exit code: 0 on
// success, 1 when a call or the server fails, 2 for a usage error.
func Main(args []string, stdout, stderr io.Writer, services ...fx.Option) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr, services)
	case "call":
		return call(args[1:], stdout, stderr, services)
	case "load":
		return load(args[1:], stdout, stderr, services)
	case "dev-cert":
		return devCert(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "axon: unknown command %q\n%s", args[0], usage)
	return 2
}

func serve(args []string, stderr io.Writer, services []fx.Option) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (YAML)")
	watch := fs.Bool("watch", true, "apply the config file again when it changes")
	if err := fs.Parse(args); err != nil || *path == "" {
		fmt.Fprint(stderr, "axon serve: --config FILE is required\n")
		return 2
	}
	cfg, err := kernel.LoadConfig(*path, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "axon serve: %v\n", err)
		return 1
	}
	logs := newLogs(stderr, cfg.Log)
	log := logs.log
	var rt *kernel.Runtime
	app := fx.New(
		Plugins, kernel.Module, fx.Options(services...),
		fx.Supply(log),
		fx.NopLogger,
		fx.Populate(&rt),
	)
	if err := app.Err(); err != nil {
		fmt.Fprintf(stderr, "axon serve: %v\n", err)
		return 1
	}
	rt.Follow(logs)
	// Signals and the file watch are set up before the listeners open, so
	// nothing that arrives once the server is up is missed.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	changed := make(chan struct{}, 1)
	if *watch {
		wctx, stop := context.WithCancel(context.Background())
		defer stop()
		if err := watchFile(wctx, *path, log, func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		}); err != nil {
			log.Warn("not watching the config file; SIGHUP still reloads it", "err", err)
		}
	}
	// Process-lifetime plugins (fx OnStart hooks, such as a telemetry
	// provider) start before the first generation and stop after the last
	// one has drained.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = app.Start(ctx)
	if err == nil {
		err = rt.Apply(ctx, cfg)
	}
	cancel()
	defer stopApp(app, log)
	if err != nil {
		fmt.Fprintf(stderr, "axon serve: %v\n", err)
		return 1
	}
	for _, ep := range rt.Endpoints() {
		log.Info("listening", "endpoint", ep.Address)
	}

loop:
	for {
		select {
		case <-changed:
			log.Info("config file changed", "path", *path)
			reload(rt, *path, logs)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reload(rt, *path, logs)
				continue
			}
			log.Info("draining", "signal", sig.String(), "timeout", rt.Config().Server.DrainTimeout)
			break loop
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), rt.Config().Server.DrainTimeout)
	defer cancel()
	if err := rt.Shutdown(ctx); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	log.Info("stopped")
	return 0
}

// reload applies the config file again, its log block included; a bad
// file is logged and the running generation keeps serving. It returns once
// the new generation runs: the old one drains in the background, so a
// reload is never queued behind a drain.
func reload(rt *kernel.Runtime, path string, logs *logs) {
	cfg, err := kernel.LoadConfig(path, os.Environ())
	if err == nil {
		_, err = rt.Swap(context.Background(), cfg)
	}
	if err != nil {
		logs.log.Error("reload rejected; the running configuration keeps serving", "err", err)
		return
	}
	logs.log.Info("reloaded", "generation", rt.Generation())
}

// stopApp runs the fx app's OnStop hooks, bounded by a timeout.
func stopApp(app *fx.App, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Stop(ctx); err != nil {
		log.Warn("stopping plugins failed", "err", err)
	}
}

// callSetup is what `axon call` and `axon load` share: a client for the
// target and the method's request, decoded from JSON.
type callSetup struct {
	client *kernel.BuiltClient
	method *kernel.MethodDesc
	req    proto.Message
	app    *fx.App
	log    *slog.Logger
}

// close closes the client, then stops the fx app's plugins.
func (cs *callSetup) close() {
	cs.client.Close()
	stopApp(cs.app, cs.log)
}

// shapeName names the streaming shape of m.
func shapeName(m *kernel.MethodDesc) string {
	switch {
	case m.ClientStreams && m.ServerStreams:
		return "bidirectional-streaming"
	case m.ClientStreams:
		return "client-streaming"
	case m.ServerStreams:
		return "server-streaming"
	}
	return "unary"
}

// setupCall parses the common flags' results and builds the client. The
// command supports unary methods, and server-streaming ones too when
// serverStreams is set; a method of another shape is a usage error. It
// returns an exit code other than -1 when it failed (after reporting why).
func setupCall(cmd, path, target, method, body string, serverStreams bool, stderr io.Writer, services []fx.Option) (*callSetup, int) {
	cfg, err := kernel.LoadConfig(path, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "axon %s: %v\n", cmd, err)
		return nil, 1
	}
	if target == "" {
		target = cfg.Service
	}
	log := newLogger(stderr, kernel.LogConfig{Level: "warn"})
	var cat *kernel.Catalog
	var table *kernel.ServiceTable
	app := fx.New(Plugins, kernel.Module, fx.Options(services...), fx.Supply(log), fx.NopLogger, fx.Populate(&cat, &table))
	if err := app.Err(); err != nil {
		fmt.Fprintf(stderr, "axon %s: %v\n", cmd, err)
		return nil, 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "axon %s: %v\n", cmd, err)
		return nil, 1
	}
	ok := false
	defer func() {
		if !ok {
			stopApp(app, log)
		}
	}()
	m := table.Lookup(method)
	if m == nil {
		fmt.Fprintf(stderr, "axon %s: unknown method %q (known: %s)\n", cmd, method, strings.Join(methodNames(table), ", "))
		return nil, 2
	}
	if m.ClientStreams || (m.ServerStreams && !serverStreams) {
		supported := "unary methods"
		if serverStreams {
			supported = "unary and server-streaming methods"
		}
		fmt.Fprintf(stderr, "axon %s: method %s is %s; axon %s supports %s\n", cmd, strings.TrimPrefix(m.FullName, "/"), shapeName(m), cmd, supported)
		return nil, 2
	}
	req, ok1 := m.NewRequest().(proto.Message)
	_, ok2 := m.NewResponse().(proto.Message)
	if !ok1 || !ok2 {
		fmt.Fprintf(stderr, "axon %s: %s does not use protobuf messages\n", cmd, m.FullName)
		return nil, 2
	}
	if err := protojson.Unmarshal([]byte(body), req); err != nil {
		fmt.Fprintf(stderr, "axon %s: request JSON for %s: %v\n", cmd, m.FullName, err)
		return nil, 2
	}
	client, err := kernel.BuildClient(cat, cfg, target, log)
	if err != nil {
		fmt.Fprintf(stderr, "axon %s: %v\n", cmd, err)
		return nil, 1
	}
	ok = true
	return &callSetup{client: client, method: m, req: req, app: app, log: log}, -1
}

func call(args []string, stdout, stderr io.Writer, services []fx.Option) int {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (YAML)")
	target := fs.String("target", "", "service name or endpoint address (default: the config's service)")
	timeout := fs.Duration("timeout", 10*time.Second, "call deadline")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() != 2 {
		fmt.Fprint(stderr, "axon call: want --config FILE METHOD JSON\n")
		return 2
	}
	cs, code := setupCall("call", *path, *target, fs.Arg(0), fs.Arg(1), true, stderr, services)
	if cs == nil {
		return code
	}
	client, m, req := cs.client, cs.method, cs.req
	defer cs.close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if m.ServerStreams {
		if err := callServerStream(ctx, client, m, req, stdout); err != nil {
			return reportCallError(stderr, err)
		}
		return 0
	}
	resp := m.NewResponse().(proto.Message)
	if err := client.Invoke(ctx, m.FullName, req, resp); err != nil {
		return reportCallError(stderr, err)
	}
	out, err := protojson.Marshal(resp)
	if err != nil {
		fmt.Fprintf(stderr, "axon call: %v\n", errors.Unwrap(err))
		return 1
	}
	// protojson varies its whitespace from build to build on purpose;
	// indent it the same way every time, for people and scripts.
	var pretty bytes.Buffer
	json.Indent(&pretty, out, "", "  ")
	fmt.Fprintln(stdout, pretty.String())
	return 0
}

// reportCallError prints the status of a failed call, or the error that
// kept axon call from printing a response, and returns the exit code 1.
func reportCallError(stderr io.Writer, err error) int {
	if errors.Is(err, errOutput) {
		fmt.Fprintf(stderr, "axon call: %v\n", err)
		return 1
	}
	se := status.FromError(err)
	fmt.Fprintf(stderr, "ERROR:\n  Code: %s\n  Message: %s\n", se.Code(), se.Message())
	return 1
}

// errOutput wraps the errors of printing a response, which are axon call's
// own, not the call's.
var errOutput = errors.New("printing the response")

// callServerStream calls the server-streaming method m with req and writes
// each response to stdout as it arrives, as one line of compact JSON. It
// returns nil when the call ends with OK, and otherwise the call's status or
// an error wrapping errOutput.
func callServerStream(ctx context.Context, inv kernel.Invoker, m *kernel.MethodDesc, req proto.Message, stdout io.Writer) error {
	// A schema codec (binary) needs the fingerprint of the method's
	// messages, which generated clients pass with kernel.StreamTypes.
	schema := func(c *kernel.ClientCall) {
		if sc, ok := c.Codec.(kernel.SchemaCodec); ok {
			c.Schema = sc.Schema(m.NewRequest(), m.NewResponse())
		}
	}
	s, err := inv.NewStream(ctx, m.FullName, schema)
	if err != nil {
		return err
	}
	// After the call has ended, SendMsg returns io.EOF and RecvMsg the
	// status.
	if err := s.SendMsg(req); err != nil && err != io.EOF {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		resp := m.NewResponse().(proto.Message)
		if err := s.RecvMsg(resp); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		out, err := protojson.Marshal(resp)
		if err != nil {
			return fmt.Errorf("%w: %v", errOutput, errors.Unwrap(err))
		}
		var line bytes.Buffer
		json.Compact(&line, out)
		line.WriteByte('\n')
		if _, err := stdout.Write(line.Bytes()); err != nil {
			return fmt.Errorf("%w: %v", errOutput, err)
		}
	}
}

func methodNames(t *kernel.ServiceTable) []string {
	var names []string
	for _, s := range t.Services() {
		for _, m := range s.Methods {
			names = append(names, strings.TrimPrefix(m.FullName, "/"))
		}
	}
	return names
}
