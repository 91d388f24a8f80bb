package grpc_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcmd "google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
)

// serverSettings opens an HTTP/2 connection and returns the server's
// SETTINGS.
func serverSettings(t *testing.T, addr string) map[http2.SettingID]uint32 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			out := map[http2.SettingID]uint32{}
			sf.ForeachSetting(func(s http2.Setting) error { out[s.ID] = s.Val; return nil })
			return out
		}
	}
}

func TestLimitSettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limits  kernel.Limits
		streams uint32
		headers uint32
	}{
		{"defaults", kernel.Limits{}, 100, 8<<10 + 2<<10},
		{"configured", kernel.Limits{MaxConcurrentStreams: 7, MaxMetadata: 1 << 10}, 7, 1<<10 + 2<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{limits: tc.limits})
			s := serverSettings(t, f.addr)
			if s[http2.SettingMaxConcurrentStreams] != tc.streams {
				t.Errorf("MAX_CONCURRENT_STREAMS %d, want %d", s[http2.SettingMaxConcurrentStreams], tc.streams)
			}
			// net/http adds room for 10 fields of 32 bytes' overhead.
			if got := s[http2.SettingMaxHeaderListSize]; got != tc.headers+320 {
				t.Errorf("MAX_HEADER_LIST_SIZE %d, want %d", got, tc.headers+320)
			}
		})
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestLimitMessageAndMetadata(t *testing.T) {
	f := newFixture(t, fixtureOpts{limits: kernel.Limits{MaxMessage: 1 << 10, MaxMetadata: 1 << 10}})
	cc := dial(t, f.addr)
	big := strings.Repeat("x", 2<<10)
	for _, tc := range []struct {
		name string
		in   string
		md   []string
		opts []grpc.CallOption
		code codes.Code
	}{
		{"message within the limit", strings.Repeat("x", 900), nil, nil, codes.OK},
		{"message above the limit", big, nil, nil, codes.ResourceExhausted},
		{"compressed message above the limit once decompressed", big, nil, []grpc.CallOption{grpc.UseCompressor("gzip")}, codes.ResourceExhausted},
		{"metadata above the limit", "hi", []string{"x-big", strings.Repeat("m", 1200)}, nil, codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			if tc.md != nil {
				ctx = grpcmd.AppendToOutgoingContext(ctx, tc.md...)
			}
			err := cc.Invoke(ctx, mEcho, wrapperspb.String(tc.in), new(wrapperspb.StringValue), tc.opts...)
			if grpcstatus.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
		})
	}

	// A frame claiming 4 GiB is refused from its prefix: nothing is read
	// or allocated for it.
	t.Run("claimed length", func(t *testing.T) {
		body := []byte{0, 0xff, 0xff, 0xff, 0xff}
		res, _ := rawCall(t, h2cClient(), "POST", "http://"+f.addr+mEcho, http.Header{"Content-Type": {"application/grpc"}}, body)
		if res.Trailer.Get("Grpc-Status") != "8" && res.Header.Get("Grpc-Status") != "8" {
			t.Errorf("got %v %v", res.Header, res.Trailer)
		}
	})
	// gzip that expands past the limit is cut off while decompressing.
	t.Run("gzip bomb", func(t *testing.T) {
		msg := gzipped(t, make([]byte, 512<<10)) // about 520 bytes
		if len(msg) > 1<<10 {
			t.Fatalf("compressed bomb is %d bytes, above the limit itself", len(msg))
		}
		body := frame(1, msg)
		res, _ := rawCall(t, h2cClient(), "POST", "http://"+f.addr+mEcho, http.Header{"Content-Type": {"application/grpc"}, "Grpc-Encoding": {"gzip"}}, body)
		if res.Trailer.Get("Grpc-Status") != "8" && res.Header.Get("Grpc-Status") != "8" {
			t.Errorf("got %v %v", res.Header, res.Trailer)
		}
	})
}

func TestHandshakeTimeout(t *testing.T) {
	f := newFixture(t, fixtureOpts{limits: kernel.Limits{HandshakeTimeout: 20 * time.Millisecond}})
	for _, opening := range []string{"", "PRI * HTTP/2.0\r\n", "POST / HTTP/1.1\r\n"} {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, opening)
		c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a hang guard, not a threshold
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Errorf("%q: the server did not close a silent connection: %v", opening, err)
		}
		_ = b // HTTP/1.1 may answer 408 before closing
	}
}

func TestShutdown(t *testing.T) {
	t.Run("drains calls in flight", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		cc := dial(t, f.addr)
		errc := make(chan error, 1)
		go func() { errc <- cc.Invoke(ctxT(t), mEcho, wrapperspb.String("hold"), new(wrapperspb.StringValue)) }()
		f.waitStarted(t)
		shut := make(chan error, 1)
		go func() { shut <- f.srv.Shutdown(ctxT(t)) }()
		// The call in flight finishes once released; Shutdown then returns.
		close(f.release)
		if err := <-errc; err != nil {
			t.Errorf("call in flight: %v", err)
		}
		if err := <-shut; err != nil {
			t.Errorf("shutdown: %v", err)
		}
		// New connections are closed at once.
		c1, c2 := net.Pipe()
		done := make(chan struct{})
		go func() { f.srv.ServeConn(c1); close(done) }()
		if _, err := c2.Read(make([]byte, 1)); err == nil {
			t.Error("a connection after Shutdown was served")
		}
		<-done
		err := cc.Invoke(ctxT(t), mEcho, wrapperspb.String("hi"), new(wrapperspb.StringValue), grpc.WaitForReady(false))
		if grpcstatus.Code(err) != codes.Unavailable {
			t.Errorf("call after shutdown: %v", err)
		}
	})
	t.Run("cancels calls at the deadline", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		cc := dial(t, f.addr)
		errc := make(chan error, 1)
		go func() { errc <- cc.Invoke(ctxT(t), mEcho, wrapperspb.String("wait"), new(wrapperspb.StringValue)) }()
		f.waitStarted(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no time to drain
		if err := f.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "calls still running (1 on 1 connections)") {
			t.Errorf("shutdown: %v, want context.Canceled and the call counted", err)
		}
		if err := f.waitEnded(t); err == nil {
			t.Error("handler context not done")
		}
		if err := <-errc; grpcstatus.Code(err) != codes.Unavailable && grpcstatus.Code(err) != codes.Canceled {
			t.Errorf("call: %v", err)
		}
	})
	t.Run("says when no call was running", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		// A client that opens a connection and sends nothing: net/http
		// gives it a few seconds to send its first request.
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waitConns(t, f.srv.(kernel.ConnReporter), 1)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := f.srv.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), "1 connections still open with no call in flight") {
			t.Errorf("shutdown: %v, want the open connection named", err)
		}
	})
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		tree map[string]any
		err  string
	}{
		{"empty", nil, ""},
		{"cors", map[string]any{"cors": map[string]any{"allowed_origins": []any{"https://a.example", "*"}, "allowed_headers": []any{"x-token"}, "max_age": "1m"}}, ""},
		{"unknown key", map[string]any{"cors": map[string]any{"origins": []any{"x"}}}, "listen[0].protocol_options.grpc-web.cors.origins"},
		{"bad origin", map[string]any{"cors": map[string]any{"allowed_origins": []any{"app.example.com"}}}, "allowed_origins[0]"},
		{"bad header", map[string]any{"cors": map[string]any{"allowed_headers": []any{"x y"}}}, "allowed_headers[0]"},
		{"bad max age", map[string]any{"cors": map[string]any{"max_age": "soon"}}, "max_age"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := grpcproto.WebFactory.Build(kernel.BuildContext{}, config.Raw{Path: "listen[0].protocol_options.grpc-web", Tree: tc.tree})
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("got %v, want %q", err, tc.err)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		proto, prefix string
		want          kernel.Match
	}{
		{"grpc", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", kernel.MatchYes},
		{"grpc", "PRI", kernel.MatchMore},
		{"grpc", "POST / HTTP/1.1\r\n", kernel.MatchNo},
		{"grpc-web", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", kernel.MatchYes},
		{"grpc-web", "POST / HTTP/1.1\r\n", kernel.MatchYes},
		{"grpc-web", "OPTIONS / HTTP/1.1\r\n", kernel.MatchYes},
		{"grpc-web", "P", kernel.MatchMore},
		{"grpc-web", "DELETE /a.B/C HTTP/1.1\r\n", kernel.MatchYes},
		{"grpc-web", "DEL", kernel.MatchMore},
		{"grpc", "DELETE / HTTP/1.1\r\n", kernel.MatchNo},
		{"grpc-web", "\xa7AXON", kernel.MatchNo},
	} {
		if got := grpcproto.New(tc.proto, grpcproto.DefaultConfig()).Match([]byte(tc.prefix)); got != tc.want {
			t.Errorf("%s %q: %v, want %v", tc.proto, tc.prefix, got, tc.want)
		}
	}
}

func TestNoClientSide(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c2.Close()
	_, err := grpcproto.New("grpc", grpcproto.DefaultConfig()).NewSession(c1, kernel.SessionOptions{})
	if !errors.Is(err, grpcproto.ErrClientSide) {
		t.Errorf("got %v", err)
	}
}
