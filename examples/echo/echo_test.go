package echo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/app"
	"github.com/axonrpc/axon/examples/echo"
	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/kerneltest"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// configYAML is a server on a free port accepting codecs, whose clients
// send codec.
func configYAML(codec, codecs string) string {
	return fmt.Sprintf(`
service: echo
tls: {mode: "off"}
listen: [{transport: tcp, address: "127.0.0.1:0"}]
codec: %s
server: {codecs: %s}
`, codec, codecs)
}

func parse(t *testing.T, text string) *kernel.Config {
	t.Helper()
	return kerneltest.Config(t, text)
}

// serve runs the example service with the standard plugin set, as
// `axon serve` does, and returns its catalog and address.
func serve(t *testing.T, codecs string) (*kernel.Catalog, string) {
	t.Helper()
	var cat *kernel.Catalog
	var table *kernel.ServiceTable
	a := fx.New(app.Plugins, kernel.Module, echo.Module, fx.NopLogger,
		fx.Supply(slog.New(slog.DiscardHandler)), fx.Populate(&cat, &table))
	if err := a.Err(); err != nil {
		t.Fatal(err)
	}
	rt := kernel.NewRuntime(cat, table, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.Apply(ctx, parse(t, configYAML("proto", codecs))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rt.Shutdown(ctx)
	})
	return cat, rt.Endpoints()[0].Address
}

// client returns a generated Echo client sending codec to addr.
func client(t *testing.T, cat *kernel.Catalog, addr, codec string) echopb.EchoClient {
	t.Helper()
	c, err := kernel.BuildClient(cat, parse(t, configYAML(codec, "[proto]")), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return echopb.NewEchoClient(c)
}

func TestEveryCodec(t *testing.T) {
	cat, addr := serve(t, "[binary, proto, json]")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	order := &echopb.Order{
		Id:       7,
		Customer: &echopb.Customer{Name: "Ada", Address: &echopb.Address{City: "Zürich", Country: "CH"}},
		Items:    []*echopb.Item{{Sku: 1, Quantity: 2, Price: 150}, {Sku: 2, Quantity: 1, Price: 99}},
		Tags:     map[string]string{"b": "2", "a": "1"},
	}
	for _, codec := range []string{"binary", "proto", "json"} {
		t.Run(codec, func(t *testing.T) {
			c := client(t, cat, addr, codec)
			r, err := c.Say(ctx, &echopb.SayRequest{Text: "hi, " + codec})
			if err != nil || r.GetText() != "hi, "+codec {
				t.Fatalf("Say: %v, %v", r, err)
			}
			sum, err := c.Summarize(ctx, order)
			if err != nil {
				t.Fatal(err)
			}
			if sum.GetTotal() != 399 || sum.GetItemCount() != 2 || sum.GetShipTo() != "Zürich, CH" || !slices.Equal(sum.GetTagKeys(), []string{"a", "b"}) {
				t.Fatalf("Summarize: %v", sum)
			}
			_, err = c.Say(ctx, &echopb.SayRequest{})
			if se := status.FromError(err); se.Code() != status.InvalidArgument || se.Message() != "text is empty" {
				t.Fatalf("empty Say: %v", err)
			}
			// The streaming shapes, over the native protocol.
			if got, err := expand(ctx, c, "one two three"); err != nil || !slices.Equal(got, []string{"one", "two", "three"}) {
				t.Fatalf("Expand: %q, %v", got, err)
			}
			if got, err := collect(ctx, c, []string{"one", "two"}); err != nil || !slices.Equal(got, []string{"one two"}) {
				t.Fatalf("Collect: %q, %v", got, err)
			}
			if got, err := chat(ctx, c, []string{"a", "b"}); err != nil || !slices.Equal(got, []string{"a", "b"}) {
				t.Fatalf("Chat: %q, %v", got, err)
			}
			if got, err := chat(ctx, c, []string{"a", ""}); status.CodeOf(err) != status.InvalidArgument || !slices.Equal(got, []string{"a"}) {
				t.Fatalf("Chat with an empty text: %q, %v", got, err)
			}
		})
	}
}

func TestCodecNotAccepted(t *testing.T) {
	cat, addr := serve(t, "[proto, json]")
	_, err := client(t, cat, addr, "binary").Say(context.Background(), &echopb.SayRequest{Text: "hi"})
	se := status.FromError(err)
	if se.Code() != status.Unimplemented || se.Message() != `codec "binary" is not accepted by this server (accepted: json, proto)` {
		t.Fatalf("got %v", err)
	}
}

func TestUnknownCodec(t *testing.T) {
	cat, addr := serve(t, "[proto]")
	_, err := kernel.BuildClient(cat, parse(t, configYAML("xml", "[proto]")), addr, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown codec plugin "xml" (known: binary, json, proto)`) {
		t.Fatalf("got %v", err)
	}
}

// TestAxonCall is the newcomer's path: `axon call` reads the request as
// JSON and sends it with the codec of the config file.
func TestAxonCall(t *testing.T) {
	_, addr := serve(t, "[binary, proto, json]")
	for _, codec := range []string{"binary", "proto", "json"} {
		path := filepath.Join(t.TempDir(), "axon.yaml")
		if err := os.WriteFile(path, []byte(configYAML(codec, "[proto]")), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		code := app.Main([]string{"call", "--config", path, "--target", addr, "axon.example.v1.Echo/Summarize",
			`{"id": 3, "items": [{"sku": "5", "quantity": 2, "price": "21"}], "tags": {"k": "v"}}`}, &out, &errOut, echo.Module)
		if code != 0 || !strings.Contains(out.String(), `"total": "42"`) || !strings.Contains(out.String(), `"tagKeys": [`) {
			t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", codec, code, out.String(), errOut.String())
		}
	}
}

// memInvoker is a kernel.Invoker that runs the methods of svc in this
// process, without interceptors, codecs or a network: the generated client
// talks to the generated service description through channels. Messages
// are cloned on the way, as a codec would copy them.
type memInvoker struct{ svc *kernel.ServiceDesc }

func (inv memInvoker) method(name string) (*kernel.MethodDesc, error) {
	for _, m := range inv.svc.Methods {
		if m.FullName == name {
			return m, nil
		}
	}
	return nil, status.Errorf(status.Unimplemented, "unknown method %s", name)
}

func (inv memInvoker) Invoke(ctx context.Context, method string, req, resp any, _ ...kernel.CallOption) error {
	m, err := inv.method(method)
	if err != nil {
		return err
	}
	out, err := m.Handler(ctx, req)
	if err != nil {
		return err
	}
	proto.Merge(resp.(proto.Message), out.(proto.Message))
	return nil
}

func (inv memInvoker) NewStream(ctx context.Context, method string, _ ...kernel.CallOption) (kernel.ClientStream, error) {
	m, err := inv.method(method)
	if err != nil {
		return nil, err
	}
	if m.Stream == nil {
		return nil, status.Errorf(status.Internal, "%s is unary", method)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &memPipe{ctx: ctx, up: make(chan proto.Message, 16), down: make(chan proto.Message, 16)}
	go func() {
		defer cancel()
		p.err = m.Stream(memServerStream{p})
		close(p.down)
	}()
	return memClientStream{p}, nil
}

// memPipe carries one call's messages: up from the client, down from the
// server. err, the handler's result, is written before down is closed.
type memPipe struct {
	ctx      context.Context
	up, down chan proto.Message
	err      error
}

func recvInto(m any, c <-chan proto.Message, done <-chan struct{}) (bool, error) {
	select {
	case v, ok := <-c:
		if ok {
			proto.Merge(m.(proto.Message), v)
		}
		return ok, nil
	case <-done:
		return false, status.New(status.Canceled, "call cancelled")
	}
}

type memServerStream struct{ p *memPipe }

func (s memServerStream) Context() context.Context     { return s.p.ctx }
func (s memServerStream) SendHeader(metadata.MD) error { return nil }
func (s memServerStream) SendMsg(m any) error {
	select {
	case s.p.down <- proto.Clone(m.(proto.Message)):
		return nil
	case <-s.p.ctx.Done():
		return status.New(status.Canceled, "call cancelled")
	}
}
func (s memServerStream) RecvMsg(m any) error {
	ok, err := recvInto(m, s.p.up, s.p.ctx.Done())
	if err == nil && !ok {
		return io.EOF
	}
	return err
}

type memClientStream struct{ p *memPipe }

func (s memClientStream) Context() context.Context     { return s.p.ctx }
func (s memClientStream) Header() (metadata.MD, error) { return nil, nil }
func (s memClientStream) Trailer() metadata.MD         { return nil }
func (s memClientStream) CloseSend() error             { close(s.p.up); return nil }
func (s memClientStream) SendMsg(m any) error {
	select {
	case s.p.up <- proto.Clone(m.(proto.Message)):
		return nil
	case <-s.p.ctx.Done(): // the call has ended; RecvMsg gives its status
		return io.EOF
	}
}
func (s memClientStream) RecvMsg(m any) error {
	if ok, _ := recvInto(m, s.p.down, nil); ok {
		return nil
	}
	if s.p.err != nil {
		return s.p.err
	}
	return io.EOF
}

// TestStreamingMethods calls each streaming method through the generated
// client and service description, in process; TestEveryCodec calls them
// over the native protocol.
func TestStreamingMethods(t *testing.T) {
	c := echopb.NewEchoClient(memInvoker{echopb.NewEchoService(echo.Server{})})
	for _, tc := range []struct {
		name   string
		method string
		texts  []string // the requests' texts
		want   []string // the responses' texts
		code   status.Code
	}{
		{"expand words", "Expand", []string{" one two\tthree "}, []string{"one", "two", "three"}, status.OK},
		{"expand one word", "Expand", []string{"hi"}, []string{"hi"}, status.OK},
		{"expand no words", "Expand", []string{" \n "}, nil, status.InvalidArgument},
		{"collect", "Collect", []string{"one", "two three", "four"}, []string{"one two three four"}, status.OK},
		{"collect nothing", "Collect", nil, []string{""}, status.OK},
		{"chat", "Chat", []string{"a", "b", "c"}, []string{"a", "b", "c"}, status.OK},
		{"chat nothing", "Chat", nil, nil, status.OK},
		{"chat empty text", "Chat", []string{"a", "", "c"}, []string{"a"}, status.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var got []string
			var err error
			switch tc.method {
			case "Expand":
				got, err = expand(ctx, c, tc.texts[0])
			case "Collect":
				got, err = collect(ctx, c, tc.texts)
			case "Chat":
				got, err = chat(ctx, c, tc.texts)
			}
			if code := status.CodeOf(err); code != tc.code || !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.code)
			}
		})
	}
}

func expand(ctx context.Context, c echopb.EchoClient, text string) ([]string, error) {
	s, err := c.Expand(ctx, &echopb.SayRequest{Text: text})
	if err != nil {
		return nil, err
	}
	var got []string
	for {
		r, err := s.Recv()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, r.GetText())
	}
}

func collect(ctx context.Context, c echopb.EchoClient, texts []string) ([]string, error) {
	s, err := c.Collect(ctx)
	if err != nil {
		return nil, err
	}
	for _, text := range texts {
		if err := s.Send(&echopb.SayRequest{Text: text}); err != nil {
			return nil, err
		}
	}
	r, err := s.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return []string{r.GetText()}, nil
}

// chat sends each text and waits for its answer before sending the next.
func chat(ctx context.Context, c echopb.EchoClient, texts []string) ([]string, error) {
	s, err := c.Chat(ctx)
	if err != nil {
		return nil, err
	}
	var got []string
	for _, text := range texts {
		if err := s.Send(&echopb.SayRequest{Text: text}); err != nil {
			return got, err
		}
		r, err := s.Recv()
		if err != nil {
			return got, err
		}
		got = append(got, r.GetText())
	}
	if err := s.CloseSend(); err != nil {
		return got, err
	}
	if _, err := s.Recv(); err != io.EOF {
		return got, errors.Join(errors.New("want io.EOF after the last answer"), err)
	}
	return got, nil
}

// TestServiceShapes checks the streaming shape of every method the service
// describes, and that a server without a method answers UNIMPLEMENTED.
func TestServiceShapes(t *testing.T) {
	want := map[string][2]bool{ // method -> client streams, server streams
		"Say": {false, false}, "Summarize": {false, false},
		"Expand": {false, true}, "Collect": {true, false}, "Chat": {true, true},
	}
	svc := echopb.NewEchoService(echo.Server{})
	if len(svc.Methods) != len(want) {
		t.Fatalf("%d methods, want %d", len(svc.Methods), len(want))
	}
	for _, m := range svc.Methods {
		w, ok := want[m.Name]
		if !ok || m.ClientStreams != w[0] || m.ServerStreams != w[1] || (m.Stream != nil) != m.IsStreaming() || (m.Handler != nil) == m.IsStreaming() {
			t.Errorf("%s: client streams %v, server streams %v, stream handler %v, unary handler %v; want streams %v",
				m.FullName, m.ClientStreams, m.ServerStreams, m.Stream != nil, m.Handler != nil, w)
		}
	}

	c := echopb.NewEchoClient(memInvoker{echopb.NewEchoService(echopb.UnimplementedEchoServer{})})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := expand(ctx, c, "x"); status.CodeOf(err) != status.Unimplemented {
		t.Errorf("unimplemented Expand: %v", err)
	}
	if _, err := collect(ctx, c, nil); status.CodeOf(err) != status.Unimplemented {
		t.Errorf("unimplemented Collect: %v", err)
	}
	if _, err := chat(ctx, c, nil); status.CodeOf(err) != status.Unimplemented {
		t.Errorf("unimplemented Chat: %v", err)
	}
}
