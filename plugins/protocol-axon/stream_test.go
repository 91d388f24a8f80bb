package native_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
)

// These tests run the protocol's public API (New, NewServer, NewSession via
// kernel.Client) over real TCP on loopback.

const waitLimit = 20 * time.Second

// msg is the test message: a string.
type msg struct{ S string }

// fpCodec encodes *msg as its bytes. With version set it is a
// kernel.SchemaCodec whose fingerprints differ between versions.
type fpCodec struct{ version string }

func (fpCodec) Name() string { return "fp" }
func (fpCodec) Marshal(dst []byte, v any) ([]byte, error) {
	return append(dst, v.(*msg).S...), nil
}
func (fpCodec) Unmarshal(src []byte, v any) error { v.(*msg).S = string(src); return nil }

type schemaCodec struct{ fpCodec }

func (c schemaCodec) Schema(req, resp any) string {
	return fmt.Sprintf("%T>%T@%s", req, resp, c.version)
}
func (c schemaCodec) CompareSchema(req, resp any, peer string) error {
	if want := c.Schema(req, resp); peer != want {
		return status.Errorf(status.FailedPrecondition, "schema %s differs from the server's %s", peer, want)
	}
	return nil
}

// tcpTransport dials and listens on TCP, and records what its connections
// write.
type tcpTransport struct {
	mu      sync.Mutex
	written bytes.Buffer
}

func (t *tcpTransport) Listen(ctx context.Context, address string) (net.Listener, error) {
	return net.Listen("tcp", address)
}
func (t *tcpTransport) Dial(ctx context.Context, address string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, t: t}, nil
}

// count returns how often s occurs in what the client wrote.
func (t *tcpTransport) count(s string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Count(t.written.Bytes(), []byte(s))
}

type recordingConn struct {
	net.Conn
	t *tcpTransport
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.t.mu.Lock()
	c.t.written.Write(b)
	c.t.mu.Unlock()
	return c.Conn.Write(b)
}

// testService counts handler runs and can flood a client.
type testService struct {
	runs    atomic.Int32
	sent    atomic.Int64 // Flood's successful sends so far
	flooded chan int     // Flood's count of successful sends, when it ends
}

func (s *testService) desc() *kernel.ServiceDesc {
	return kernel.NewService("t.S",
		kernel.Unary("Echo", func(_ context.Context, m *msg) (*msg, error) {
			s.runs.Add(1)
			return m, nil
		}),
		kernel.BidiStreaming("Chat", func(st kernel.BidiStreamingServer[msg, msg]) error {
			s.runs.Add(1)
			for {
				m, err := st.Recv()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				if err := st.Send(m); err != nil {
					return err
				}
			}
		}),
		kernel.ServerStreaming("Flood", func(m *msg, st kernel.ServerStreamingServer[msg]) error {
			s.runs.Add(1)
			out := &msg{S: m.S}
			n := 0
			var err error
			for range 100000 {
				if err = st.Send(out); err != nil {
					break
				}
				n++
				s.sent.Add(1)
			}
			s.flooded <- n
			return err
		}),
	)
}

type fixture struct {
	svc    *testService
	client *kernel.Client
	tr     *tcpTransport
	addr   string
	stop   func() // closes the listener and shuts the server down; idempotent
}

// start serves the test service with serverCodec and cfg, and returns a
// client using clientCodec and cfg.
func start(t testing.TB, cfg native.Config, serverCodec, clientCodec kernel.Codec) *fixture {
	t.Helper()
	f := &fixture{svc: &testService{flooded: make(chan int, 1)}, tr: &tcpTransport{}}
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{f.svc.desc()})
	if err != nil {
		t.Fatal(err)
	}
	d := kernel.NewDispatcher(table, nil, []kernel.Codec{serverCodec}, kernel.DefaultLimits(), slog.New(slog.DiscardHandler))
	srv := native.New(cfg).NewServer(d)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c)
		}
	}()
	var once sync.Once
	f.addr = ln.Addr().String()
	f.stop = func() {
		once.Do(func() {
			ln.Close()
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			srv.Shutdown(ctx)
		})
	}
	t.Cleanup(f.stop)
	f.client, err = kernel.NewClient(kernel.ClientOptions{
		Target:     "tcp://" + ln.Addr().String(),
		Transports: map[string]kernel.Transport{"tcp": f.tr},
		Protocol:   native.New(cfg),
		Codec:      clientCodec,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.client.Close() })
	return f
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func (f *fixture) echo(ctx context.Context) error {
	var out msg
	return f.client.Invoke(ctx, "/t.S/Echo", &msg{S: "hi"}, &out)
}

func (f *fixture) chat(ctx context.Context, texts ...string) ([]string, error) {
	st, err := kernel.OpenBidiStream[msg, msg](ctx, f.client, "/t.S/Chat")
	if err != nil {
		return nil, err
	}
	var got []string
	for _, s := range texts {
		if err := st.Send(&msg{S: s}); err != nil && err != io.EOF {
			return got, err
		}
		m, err := st.Recv()
		if err != nil {
			return got, err
		}
		got = append(got, m.S)
	}
	st.CloseSend()
	if _, err := st.Recv(); err != io.EOF {
		return got, err
	}
	return got, nil
}

// TestSchemaFingerprint: a client whose codec is a SchemaCodec sends the
// method's fingerprint with the first call of each method on a connection
// only; the server checks it before decoding any message of a unary or
// streaming call, and a mismatch or a missing fingerprint fails the call
// with FAILED_PRECONDITION without running the handler.
func TestSchemaFingerprint(t *testing.T) {
	server := schemaCodec{fpCodec{version: "v1"}}
	tests := []struct {
		name   string
		client kernel.Codec
		code   status.Code
	}{
		{"same schema", schemaCodec{fpCodec{version: "v1"}}, status.OK},
		{"different schema", schemaCodec{fpCodec{version: "v2"}}, status.FailedPrecondition},
		{"no schema sent", fpCodec{}, status.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, native.DefaultConfig(), server, tt.client)
			ctx := ctxFor(t)
			for i := range 3 {
				if err := f.echo(ctx); status.CodeOf(err) != tt.code {
					t.Fatalf("unary call %d: %v, want %v", i, err, tt.code)
				}
				got, err := f.chat(ctx, "a", "b")
				if status.CodeOf(err) != tt.code || (tt.code == status.OK && strings.Join(got, "") != "ab") {
					t.Fatalf("stream %d: %q, %v, want %v", i, got, err, tt.code)
				}
			}
			runs := f.svc.runs.Load()
			switch {
			case tt.code == status.OK && runs != 6:
				t.Errorf("handlers ran %d times, want 6", runs)
			case tt.code != status.OK && runs != 0:
				t.Errorf("handlers ran %d times on a schema mismatch, want 0", runs)
			}
			if sc, ok := tt.client.(schemaCodec); ok {
				// Once for Echo, once for Chat, whether the calls succeed or
				// fail the check: the server remembers it for the connection.
				want := 2
				if n := f.tr.count("@" + sc.version); n != want {
					t.Errorf("the fingerprint went on the wire %d times, want %d", n, want)
				}
			}
		})
	}
}

// TestSchemaResentAfterRejectedHeaders: the server rejects a HEADERS block
// over max_metadata without reading it, so the fingerprint it carried is
// sent again with the next call of the method.
func TestSchemaResentAfterRejectedHeaders(t *testing.T) {
	codec := schemaCodec{fpCodec{version: "v1"}}
	f := start(t, native.DefaultConfig(), codec, codec)
	big := metadata.New("big", strings.Repeat("x", 9<<10)) // over the default 8 KiB
	var out msg
	err := f.client.Invoke(metadata.NewOutgoingContext(ctxFor(t), big), "/t.S/Echo", &msg{S: "hi"}, &out)
	if status.CodeOf(err) != status.ResourceExhausted {
		t.Fatalf("call with an oversized header block: %v, want RESOURCE_EXHAUSTED", err)
	}
	if err := f.echo(ctxFor(t)); err != nil {
		t.Fatalf("next call: %v", err)
	}
	if n := f.tr.count("@v1"); n != 2 {
		t.Errorf("the fingerprint went on the wire %d times, want 2", n)
	}
}

// TestStreamWindow: the stream_window option sets the flow-control window.
// Messages smaller and larger than the window go through both ways, and a
// server streaming to a client that does not read stops after about one
// window.
func TestStreamWindow(t *testing.T) {
	codec := fpCodec{}
	for _, window := range []config.Size{1 << 10, 64 << 10, 256 << 10} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			cfg := native.DefaultConfig()
			cfg.StreamWindow = window
			f := start(t, cfg, codec, codec)
			ctx := ctxFor(t)
			var texts []string
			for _, n := range []int{0, 10, int(window) - 1, 3 * int(window)} {
				texts = append(texts, strings.Repeat("w", n))
			}
			got, err := f.chat(ctx, texts...)
			if err != nil || len(got) != len(texts) {
				t.Fatalf("chat: %d messages, %v", len(got), err)
			}
			for i := range texts {
				if got[i] != texts[i] {
					t.Fatalf("message %d: %d bytes, want %d", i, len(got[i]), len(texts[i]))
				}
			}

			// Flood: 100-byte messages cost 110 bytes of window each. The
			// client reads the first message and then no more.
			fctx, cancel := context.WithCancel(ctx)
			defer cancel()
			st, err := kernel.OpenServerStream[msg, msg](fctx, f.client, "/t.S/Flood", &msg{S: strings.Repeat("f", 100)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatal(err)
			}
			full := int64(window) / 110
			deadline := time.Now().Add(waitLimit)
			for f.svc.sent.Load() < full {
				if time.Now().After(deadline) {
					t.Fatalf("server sent only %d messages", f.svc.sent.Load())
				}
				time.Sleep(time.Millisecond)
			}
			// Cancelling ends the handler, which reports how many sends
			// succeeded.
			cancel()
			select {
			case n := <-f.svc.flooded:
				if bound := full + 3; int64(n) > bound {
					t.Fatalf("server sent %d messages with a window of %d bytes; want at most %d", n, window, bound)
				}
			case <-time.After(waitLimit):
				t.Fatal("flood handler did not end")
			}
		})
	}
}

// TestStreamWindowGrowthBounded: a client that reads as fast as the server
// sends may let the stream's window grow (whether it does depends on the
// timing; TestFlowWindowGrowth shows the growth), but once it stops
// reading, the server can send at most stream_window_max more before it
// blocks.
func TestStreamWindowGrowthBounded(t *testing.T) {
	cfg := native.DefaultConfig()
	f := start(t, cfg, fpCodec{}, fpCodec{})
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	st, err := kernel.OpenServerStream[msg, msg](ctx, f.client, "/t.S/Flood", &msg{S: strings.Repeat("f", 100)})
	if err != nil {
		t.Fatal(err)
	}
	const read = 20000
	for range read {
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	// 100-byte messages cost 110 bytes of window each.
	full := read + int64(cfg.StreamWindowMax)/110
	deadline := time.Now().Add(waitLimit)
	// The server can send at least three quarters of the initial window
	// more (the client gives credit back by quarters).
	for f.svc.sent.Load() < read+int64(cfg.StreamWindow)*3/4/110 {
		if time.Now().After(deadline) {
			t.Fatalf("server sent only %d messages", f.svc.sent.Load())
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let a server that ignored the window run on
	cancel()
	select {
	case n := <-f.svc.flooded:
		if bound := full + 3; int64(n) > bound {
			t.Fatalf("server sent %d messages to a client that read %d; want at most %d (stream_window_max %d bytes)", n, read, bound, cfg.StreamWindowMax)
		}
	case <-time.After(waitLimit):
		t.Fatal("flood handler did not end")
	}
}

// BenchmarkStreamPingPong measures one 1 KiB message each way on an open
// bidirectional stream over TCP loopback (client and server in-process).
func BenchmarkStreamPingPong(b *testing.B) {
	f := start(b, native.DefaultConfig(), fpCodec{}, fpCodec{})
	ctx := context.Background()
	st, err := kernel.OpenBidiStream[msg, msg](ctx, f.client, "/t.S/Chat")
	if err != nil {
		b.Fatal(err)
	}
	m := &msg{S: strings.Repeat("p", 1024)}
	b.SetBytes(2 * 1024)
	b.ReportAllocs()
	for b.Loop() {
		if err := st.Send(m); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			b.Fatal(err)
		}
	}
	st.CloseSend()
	if _, err := st.Recv(); err != io.EOF {
		b.Fatal(err)
	}
}
