// Package e2e_test runs Axon end to end over real TCP on loopback: a kernel
// Runtime built from the plugin factories and a YAML config, a test service,
// and either the kernel's Client or a raw-byte peer that writes frames by hand.
package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/plugins/authz"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	devcreds "github.com/axonrpc/axon/plugins/credentials-dev"
	files "github.com/axonrpc/axon/plugins/credentials-files"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
	static "github.com/axonrpc/axon/plugins/registry-static"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// testTimeout bounds every single test's calls; nothing in this package may
// wait longer than this for anything.
const testTimeout = 20 * time.Second

const svcName = "axon.test.v1.Test"

// Full method names of the test service.
const (
	mEcho  = "/" + svcName + "/Echo"     // returns the request's text
	mSleep = "/" + svcName + "/Sleep"    // text "DURATION" or "DURATION TOKEN": sleeps, honouring ctx
	mWatch = "/" + svcName + "/Watch"    // text TOKEN: blocks until ctx is done, reports what it saw
	mStub  = "/" + svcName + "/Stubborn" // text DURATION: sleeps, ignoring ctx
	mPanic = "/" + svcName + "/Panic"    // panics
	mFail  = "/" + svcName + "/Fail"     // text "CODE MESSAGE": returns that status
	mMeta  = "/" + svcName + "/Meta"     // echoes incoming metadata as header (h-KEY) and trailer (t-KEY)
)

// watchResult is what the Watch handler saw of its context.
type watchResult struct {
	err         error
	deadline    time.Time
	hasDeadline bool
	left        time.Duration // time to the deadline when the handler started
}

// testService is the service every test serves. It records what its
// handlers observe so that tests can assert on the server side.
type testService struct {
	inflight    atomic.Int32
	maxInflight atomic.Int32
	completed   atomic.Int32 // Sleep calls that slept their full duration

	mu      sync.Mutex
	started map[string]chan struct{}    // token -> closed when the handler starts
	results map[string]chan watchResult // token -> what the handler saw
}

func newTestService() *testService {
	return &testService{started: map[string]chan struct{}{}, results: map[string]chan watchResult{}}
}

// watch registers token and returns channels closed when a handler for it
// starts and receiving what it saw.
func (s *testService) watch(token string) (started chan struct{}, result chan watchResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	started, result = make(chan struct{}), make(chan watchResult, 1)
	s.started[token], s.results[token] = started, result
	return started, result
}

func (s *testService) hooks(token string) (chan struct{}, chan watchResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started[token], s.results[token]
}

func (s *testService) enter() func() {
	n := s.inflight.Add(1)
	for {
		m := s.maxInflight.Load()
		if n <= m || s.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { s.inflight.Add(-1) }
}

func (s *testService) desc() *kernel.ServiceDesc {
	return kernel.NewService(svcName,
		kernel.Unary("Echo", func(_ context.Context, r *echopb.SayRequest) (*echopb.SayResponse, error) {
			return &echopb.SayResponse{Text: r.GetText()}, nil
		}),
		kernel.Unary("Sleep", func(ctx context.Context, r *echopb.SayRequest) (*echopb.SayResponse, error) {
			defer s.enter()()
			arg, token, _ := strings.Cut(r.GetText(), " ")
			d, err := time.ParseDuration(arg)
			if err != nil {
				return nil, status.Errorf(status.InvalidArgument, "bad duration %q", arg)
			}
			if started, _ := s.hooks(token); started != nil {
				close(started)
			}
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				s.completed.Add(1)
				return &echopb.SayResponse{Text: r.GetText()}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}),
		kernel.Unary("Watch", func(ctx context.Context, r *echopb.SayRequest) (*echopb.SayResponse, error) {
			defer s.enter()()
			started, result := s.hooks(r.GetText())
			var res watchResult
			res.deadline, res.hasDeadline = ctx.Deadline()
			if res.hasDeadline {
				res.left = time.Until(res.deadline)
			}
			if started != nil {
				close(started)
			}
			select {
			case <-ctx.Done():
				res.err = ctx.Err()
			case <-time.After(testTimeout):
				res.err = errors.New("handler context was never done")
			}
			if result != nil {
				result <- res
			}
			return nil, res.err
		}),
		kernel.Unary("Stubborn", func(_ context.Context, r *echopb.SayRequest) (*echopb.SayResponse, error) {
			defer s.enter()()
			d, err := time.ParseDuration(r.GetText())
			if err != nil {
				return nil, status.Errorf(status.InvalidArgument, "bad duration %q", r.GetText())
			}
			time.Sleep(d)
			return &echopb.SayResponse{Text: r.GetText()}, nil
		}),
		kernel.Unary("Panic", func(context.Context, *echopb.SayRequest) (*echopb.SayResponse, error) {
			panic("test handler panics on purpose")
		}),
		kernel.Unary("Fail", func(_ context.Context, r *echopb.SayRequest) (*echopb.SayResponse, error) {
			c, msg, _ := strings.Cut(r.GetText(), " ")
			n, err := strconv.Atoi(c)
			if err != nil {
				return nil, status.Errorf(status.InvalidArgument, "bad code %q", c)
			}
			return nil, status.New(status.Code(n), msg)
		}),
		kernel.Unary("Meta", func(ctx context.Context, r *echopb.SayRequest) (*echopb.SayResponse, error) {
			in := metadata.FromIncomingContext(ctx)
			h, tr := metadata.MD{}, metadata.MD{}
			var keys []string
			for k, vs := range in {
				h.Append("h-"+k, vs...)
				tr.Append("t-"+k, vs...)
				keys = append(keys, k)
			}
			if err := kernel.SetHeader(ctx, h); err != nil {
				return nil, err
			}
			if err := kernel.SetTrailer(ctx, tr); err != nil {
				return nil, err
			}
			return &echopb.SayResponse{Text: strings.Join(keys, ",")}, nil
		}),
	)
}

// tagConfig is the options block of the test-only "tag" interceptor.
type tagConfig struct {
	Key   string `yaml:"key"`
	Value string `yaml:"value"`
}

// tagFactory builds a server interceptor that sets the trailer key=value on
// every call, so a test can tell which generation answered.
var tagFactory = kernel.NewFactory(kernel.KindInterceptor, "tag",
	func() tagConfig { return tagConfig{Key: "generation"} },
	func(_ kernel.BuildContext, c tagConfig) (kernel.Interceptor, error) {
		return kernel.Interceptor{Server: func(ctx context.Context, req any, next kernel.UnaryHandler) (any, error) {
			if err := kernel.SetTrailer(ctx, metadata.New(c.Key, c.Value)); err != nil {
				return nil, err
			}
			return next(ctx, req)
		}}, nil
	})

// probe is a test-only transport named "probe": TCP that counts how often
// it opened and closed listeners and can drop every connection it accepted.
type probe struct {
	listens, listenerCloses atomic.Int32

	mu    sync.Mutex
	conns []net.Conn
}

func (p *probe) factory() kernel.Factory {
	return kernel.NewFactory(kernel.KindTransport, "probe", tcp.DefaultConfig,
		func(_ kernel.BuildContext, c tcp.Config) (kernel.Transport, error) {
			return &probeTransport{p: p, Transport: tcp.New(c)}, nil
		})
}

// dropAll closes, abruptly and without a go-away, every accepted connection.
func (p *probe) dropAll() int {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

type probeTransport struct {
	p *probe
	*tcp.Transport
}

func (t *probeTransport) Listen(ctx context.Context, address string) (net.Listener, error) {
	ln, err := t.Transport.Listen(ctx, address)
	if err != nil {
		return nil, err
	}
	t.p.listens.Add(1)
	return &probeListener{Listener: ln, p: t.p}, nil
}

type probeListener struct {
	net.Listener
	p    *probe
	once sync.Once
}

func (l *probeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.p.mu.Lock()
		l.p.conns = append(l.p.conns, c)
		l.p.mu.Unlock()
	}
	return c, err
}

func (l *probeListener) Close() error {
	l.once.Do(func() { l.p.listenerCloses.Add(1) })
	return l.Listener.Close()
}

// jsonCodec is the proto codec under another content subtype, for a client
// that asks for a codec the server does not accept.
type jsonCodec struct{ protocodec.Codec }

func (jsonCodec) Name() string { return "json" }

// srvConf describes the server configuration of a test; zero fields take
// the defaults below.
type srvConf struct {
	Service   string
	Transport string // default tcp
	Addr      string // default 127.0.0.1:0
	Options   string // listen[0].options as a YAML flow mapping
	Protocols string // listen[0].protocols as a YAML flow list, default the listener's
	Extra     string // more listeners: YAML list items, indented by 2
	Codecs    string // server.codecs, default [proto]
	Limits    string // server.limits as a YAML flow mapping
	Tag       string // when set, the "tag" interceptor sets trailer generation=Tag
	Intercept string // server.interceptors as a YAML flow list (overrides Tag)
	Drain     string // server.drain_timeout, default 10s
	Registry  string // registry block as a YAML flow mapping, default {use: static}
	TLS       string // the tls block as a YAML flow mapping, default {mode: "off"}
}

func (c srvConf) yaml() string {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "service: %s\n", def(c.Service, "test"))
	fmt.Fprintf(&b, "tls: %s\n", def(c.TLS, `{mode: "off"}`))
	fmt.Fprintf(&b, "listen:\n  - transport: %s\n    address: %q\n", def(c.Transport, "tcp"), def(c.Addr, "127.0.0.1:0"))
	if c.Options != "" {
		fmt.Fprintf(&b, "    options: %s\n", c.Options)
	}
	if c.Protocols != "" {
		fmt.Fprintf(&b, "    protocols: %s\n", c.Protocols)
	}
	b.WriteString(c.Extra)
	fmt.Fprintf(&b, "registry: %s\n", def(c.Registry, "{use: static}"))
	fmt.Fprintf(&b, "server:\n  codecs: %s\n  drain_timeout: %s\n", def(c.Codecs, "[proto]"), def(c.Drain, "10s"))
	if c.Limits != "" {
		fmt.Fprintf(&b, "  limits: %s\n", c.Limits)
	}
	ics := c.Intercept
	if ics == "" && c.Tag != "" {
		ics = fmt.Sprintf("[{use: tag, options: {value: %q}}]", c.Tag)
	}
	if ics != "" {
		fmt.Fprintf(&b, "  interceptors: %s\n", ics)
	}
	return b.String()
}

// parseConfig decodes YAML text into a kernel config, as `axon serve` does.
func parseConfig(t testing.TB, text string) *kernel.Config {
	t.Helper()
	tree, err := config.LoadBytes("test.yaml", []byte(text), nil)
	if err != nil {
		t.Fatalf("load config: %v\n%s", err, text)
	}
	cfg, err := kernel.ParseConfig(tree)
	if err != nil {
		t.Fatalf("parse config: %v\n%s", err, text)
	}
	return cfg
}

// server is a running Runtime with its test service.
type server struct {
	t     testing.TB
	svc   *testService
	probe *probe
	cat   *kernel.Catalog
	rt    *kernel.Runtime
}

func newCatalog(t testing.TB, p *probe) *kernel.Catalog {
	t.Helper()
	cat, err := kernel.NewCatalog([]kernel.Factory{
		tcp.Factory, native.Factory, grpcproto.Factory, protocodec.Factory, static.Factory, tagFactory, p.factory(),
		files.Factory, devcreds.Factory, whoamiFactory, authz.Factory,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// startServer applies c to a new Runtime and shuts it down when the test
// ends.
func startServer(t testing.TB, c srvConf) *server {
	t.Helper()
	s := &server{t: t, svc: newTestService(), probe: &probe{}}
	s.cat = newCatalog(t, s.probe)
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{s.svc.desc()})
	if err != nil {
		t.Fatal(err)
	}
	s.rt = kernel.NewRuntime(s.cat, table, nil)
	if err := s.apply(c); err != nil {
		t.Fatalf("apply: %v\n%s", err, c.yaml())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.rt.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func (s *server) apply(c srvConf) error {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	return s.rt.Apply(ctx, parseConfig(s.t, c.yaml()))
}

// addr returns the running generation's first endpoint, "tcp://host:port".
func (s *server) addr() string {
	s.t.Helper()
	eps := s.rt.Endpoints()
	if len(eps) == 0 {
		s.t.Fatal("server has no endpoints")
	}
	return eps[0].Address
}

// hostPort returns addr without its scheme.
func hostPort(addr string) string {
	_, a := kernel.SplitAddress(addr)
	return a
}

// newClient returns a kernel client for target, closed when the test ends.
func newClient(t testing.TB, target string, conns int) *kernel.Client {
	t.Helper()
	return newClientTLS(t, target, conns, nil)
}

// newClientTLS is newClient securing its connections with tls (plaintext
// when nil).
func newClientTLS(t testing.TB, target string, conns int, tls *kernel.TLS) *kernel.Client {
	t.Helper()
	c, err := kernel.NewClient(kernel.ClientOptions{
		Target:           target,
		Transports:       map[string]kernel.Transport{"tcp": tcp.New(tcp.DefaultConfig())},
		Protocol:         native.New(native.DefaultConfig()),
		Codec:            protocodec.Codec{},
		ConnsPerEndpoint: conns,
		TLS:              tls,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// invoker is what both kernel.Client and kernel.BuiltClient offer.
type invoker interface {
	Invoke(ctx context.Context, method string, req, resp any, opts ...kernel.CallOption) error
}

// say calls method with text and returns the response's text.
func say(ctx context.Context, c invoker, method, text string, opts ...kernel.CallOption) (string, error) {
	var resp echopb.SayResponse
	err := c.Invoke(ctx, method, &echopb.SayRequest{Text: text}, &resp, opts...)
	return resp.GetText(), err
}

// mustSay is say that fails the test on error.
func mustSay(t testing.TB, c invoker, method, text string, opts ...kernel.CallOption) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	got, err := say(ctx, c, method, text, opts...)
	if err != nil {
		t.Fatalf("%s(%q): %v", method, text, err)
	}
	return got
}

// freePort returns a loopback address whose port the system just chose and
// released, for tests that need the same address in two generations.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// waitFor polls cond until it holds or the test timeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// recv waits for a value on ch, failing the test after the test timeout.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// codeOf is status.CodeOf, for brevity in assertions.
func codeOf(err error) status.Code { return status.CodeOf(err) }

// loadTree loads YAML text into a configuration tree.
func loadTree(text string) (map[string]any, error) {
	return config.LoadBytes("test.yaml", []byte(text), nil)
}

// newTestRuntime returns a runtime serving the test service, with a
// catalog of factories, and shuts it down when the test ends.
func newTestRuntime(t testing.TB, factories ...kernel.Factory) (*kernel.Runtime, *kernel.Catalog) {
	t.Helper()
	cat, err := kernel.NewCatalog(factories)
	if err != nil {
		t.Fatal(err)
	}
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{newTestService().desc()})
	if err != nil {
		t.Fatal(err)
	}
	rt := kernel.NewRuntime(cat, table, nil)
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	return rt, cat
}
