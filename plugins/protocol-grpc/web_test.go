package grpc_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
)

func TestGRPCWebConnect(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for _, hc := range []struct {
		name   string
		client *http.Client
	}{{"http1", h1Client()}, {"h2c", h2cClient()}} {
		t.Run(hc.name, func(t *testing.T) {
			base := "http://" + f.addr
			echo := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc.client, base+mEcho, connect.WithGRPCWeb())
			count := connect.NewClient[wrapperspb.Int32Value, wrapperspb.Int32Value](hc.client, base+mCount, connect.WithGRPCWeb())

			req := connect.NewRequest(wrapperspb.String("hi"))
			req.Header().Set("x-echo", "web")
			res, err := echo.CallUnary(ctxT(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Msg.Value != "hi" || res.Header().Get("x-echo") != "web" || fmt.Sprint(res.Trailer().Values("x-trailer")) != "[t1 t2]" {
				t.Errorf("got %q, header %v, trailer %v", res.Msg.Value, res.Header(), res.Trailer())
			}
			if c := f.lastCall(t); c.protocol != "grpc-web" {
				t.Errorf("protocol %q", c.protocol)
			}

			_, err = echo.CallUnary(ctxT(t), connect.NewRequest(wrapperspb.String("fail")))
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), failMsg) {
				t.Errorf("error: %v", err)
			}
			f.lastCall(t)

			s, err := count.CallServerStream(ctxT(t), connect.NewRequest(wrapperspb.Int32(4)))
			if err != nil {
				t.Fatal(err)
			}
			var got []int32
			for s.Receive() {
				got = append(got, s.Msg().Value)
			}
			if err := s.Err(); err != nil || fmt.Sprint(got) != "[0 1 2 3]" {
				t.Errorf("stream %v, %v", got, err)
			}
			f.lastCall(t)

			// Client streaming: the request body carries several messages.
			sum := connect.NewClient[wrapperspb.Int32Value, wrapperspb.Int32Value](hc.client, base+mSum, connect.WithGRPCWeb())
			cs := sum.CallClientStream(ctxT(t))
			for i := int32(1); i <= 4; i++ {
				if err := cs.Send(wrapperspb.Int32(i)); err != nil {
					t.Fatal(err)
				}
			}
			if res, err := cs.CloseAndReceive(); err != nil || res.Msg.Value != 10 {
				t.Errorf("client stream: %v, %v", res, err)
			}
			f.lastCall(t)

			if hc.name == "h2c" {
				// Full duplex over HTTP/2: each reply before the next request.
				chat := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc.client, base+mChat, connect.WithGRPCWeb())
				bs := chat.CallBidiStream(ctxT(t))
				for i := range 3 {
					if err := bs.Send(wrapperspb.String(fmt.Sprint(i))); err != nil {
						t.Fatal(err)
					}
					m, err := bs.Receive()
					if err != nil || m.Value != fmt.Sprint("re: ", i) {
						t.Fatalf("bidi: %v, %v", m, err)
					}
				}
				bs.CloseRequest()
				if _, err := bs.Receive(); !errors.Is(err, io.EOF) {
					t.Errorf("bidi end: %v", err)
				}
				if bs.ResponseHeader().Get("x-chat") != "hello" {
					t.Errorf("bidi header %v", bs.ResponseHeader())
				}
				bs.CloseResponse()
				f.lastCall(t)
			}

			// Gzip both ways.
			zecho := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](hc.client, base+mEcho, connect.WithGRPCWeb(), connect.WithSendGzip())
			long := strings.Repeat("web ", 1000)
			if res, err := zecho.CallUnary(ctxT(t), connect.NewRequest(wrapperspb.String(long))); err != nil || res.Msg.Value != long {
				t.Errorf("gzip: %v", err)
			}
			f.lastCall(t)
		})
	}
}

// frame is a length-prefixed message.
func frame(flags byte, b []byte) []byte {
	out := make([]byte, 5, 5+len(b))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

func marshal(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readFrames splits a gRPC-Web response body into its messages and its
// trailers.
func readFrames(t *testing.T, body []byte) (msgs [][]byte, trailer http.Header) {
	t.Helper()
	for len(body) > 0 {
		if len(body) < 5 {
			t.Fatalf("truncated frame % x", body)
		}
		n := binary.BigEndian.Uint32(body[1:5])
		payload := body[5 : 5+n]
		if body[0]&0x80 != 0 {
			tp := bufio.NewReader(bytes.NewReader(append(payload, "\r\n"...)))
			trailer = make(http.Header)
			for {
				line, err := tp.ReadString('\n')
				line = strings.TrimRight(line, "\r\n")
				if line == "" || err != nil {
					break
				}
				k, v, _ := strings.Cut(line, ": ")
				trailer.Add(k, v)
			}
		} else {
			msgs = append(msgs, payload)
		}
		body = body[5+n:]
	}
	return msgs, trailer
}

func TestGRPCWebText(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		name   string
		method string
		body   string // base64, as a browser sends it
		want   []string
		status string
	}{
		{"unary", mEcho, b64(frame(0, marshal(t, wrapperspb.String("text")))), []string{"text"}, "0"},
		{"server stream", mCount, b64(frame(0, marshal(t, wrapperspb.Int32(3)))), []string{"0", "1", "2"}, "0"},
		// Each message base64-encoded on its own, padding in the middle.
		{"client stream", mSum, b64(frame(0, marshal(t, wrapperspb.Int32(4)))) + b64(frame(0, marshal(t, wrapperspb.Int32(5)))), []string{"9"}, "0"},
		{"error after no message", mEcho, b64(frame(0, marshal(t, wrapperspb.String("fail")))), nil, "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+f.addr+tc.method, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/grpc-web-text")
			req.Header.Set("X-Grpc-Web", "1")
			res, err := h1Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/grpc-web-text" {
				t.Fatalf("%s %v: %s", res.Status, res.Header, raw)
			}
			body, err := io.ReadAll(base64Chunks(raw))
			if err != nil {
				t.Fatal(err)
			}
			msgs, trailer := readFrames(t, body)
			if trailer == nil {
				trailer = res.Header // trailers-only
			}
			if got := trailer.Get("grpc-status"); got != tc.status {
				t.Fatalf("grpc-status %q, want %q (%v)", got, tc.status, trailer)
			}
			var got []string
			for _, m := range msgs {
				if tc.method == mEcho {
					var v wrapperspb.StringValue
					proto.Unmarshal(m, &v)
					got = append(got, v.Value)
				} else {
					var v wrapperspb.Int32Value
					proto.Unmarshal(m, &v)
					got = append(got, fmt.Sprint(v.Value))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("messages %v, want %v", got, tc.want)
			}
			f.lastCall(t)
		})
	}
}

// base64Chunks decodes concatenated padded base64 chunks.
func base64Chunks(b []byte) io.Reader {
	var out []byte
	for len(b) >= 4 {
		d, err := base64.StdEncoding.DecodeString(string(b[:4]))
		if err != nil {
			panic(err)
		}
		out = append(out, d...)
		b = b[4:]
	}
	return bytes.NewReader(out)
}

// rawCall sends one HTTP request and returns the response with its body
// read.
func rawCall(t *testing.T, c *http.Client, method, url string, h http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func TestHTTPErrors(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	req := frame(0, marshal(t, wrapperspb.String("x")))
	for _, tc := range []struct {
		name       string
		client     *http.Client
		method     string
		path       string
		ctype      string
		httpStatus int
		grpcStatus string // of a gRPC answer: in the header (trailers-only)
	}{
		{"GET", h2cClient(), "GET", mEcho, "application/grpc", 405, ""},
		{"PUT", h1Client(), "PUT", mEcho, "application/grpc-web", 405, ""},
		{"wrong content type", h2cClient(), "POST", mEcho, "application/json", 415, ""},
		{"no content type", h2cClient(), "POST", mEcho, "", 415, ""},
		{"empty subtype", h2cClient(), "POST", mEcho, "application/grpc+", 415, ""},
		{"gRPC over HTTP/1.1", h1Client(), "POST", mEcho, "application/grpc", 505, ""},
		{"malformed path", h2cClient(), "POST", "/nope", "application/grpc", 200, "12"},
		{"path with three parts", h2cClient(), "POST", "/a/b/c", "application/grpc", 200, "12"},
		{"unknown method", h2cClient(), "POST", "/" + svcName + "/Nope", "application/grpc", 200, "12"},
		{"unknown codec", h2cClient(), "POST", mEcho, "application/grpc+thrift", 200, "12"},
		{"content type parameters", h2cClient(), "POST", mEcho, "application/grpc+proto; charset=utf-8", 200, ""},
		{"unknown encoding", h2cClient(), "POST", mEcho, "application/grpc", 200, "12"},
		{"malformed timeout", h2cClient(), "POST", mEcho, "application/grpc", 200, "13"},
		{"malformed binary metadata", h2cClient(), "POST", mEcho, "application/grpc", 200, "13"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Content-Type": {tc.ctype}, "Te": {"trailers"}}
			switch tc.name {
			case "unknown encoding":
				h.Set("Grpc-Encoding", "br")
			case "malformed timeout":
				h.Set("Grpc-Timeout", "1 second")
			case "malformed binary metadata":
				h.Set("X-Key-Bin", "not base64!")
			}
			res, body := rawCall(t, tc.client, tc.method, "http://"+f.addr+tc.path, h, req)
			if res.StatusCode != tc.httpStatus {
				t.Fatalf("HTTP %s: %s", res.Status, body)
			}
			if tc.grpcStatus != "" && (res.Header.Get("Grpc-Status") != tc.grpcStatus || len(body) != 0) {
				t.Errorf("want a trailers-only answer with grpc-status %s: %v, body %q", tc.grpcStatus, res.Header, body)
			}
			if tc.httpStatus == 405 && res.Header.Get("Allow") != "POST" {
				t.Errorf("Allow: %q", res.Header.Get("Allow"))
			}
			if tc.name == "unknown encoding" && res.Header.Get("Grpc-Accept-Encoding") == "" {
				t.Error("no grpc-accept-encoding with UNIMPLEMENTED encoding")
			}
			if tc.name == "content type parameters" && res.Trailer.Get("Grpc-Status") != "0" {
				t.Errorf("trailers %v", res.Trailer)
			}
		})
	}
	if n := f.intercepted.Load(); n != 1 { // the one good call
		t.Errorf("interceptors ran %d times, want 1", n)
	}
}

func TestCORS(t *testing.T) {
	cfg := grpcproto.DefaultConfig()
	cfg.CORS.AllowedOrigins = []string{"https://app.example.com"}
	cfg.CORS.AllowedHeaders = []string{"x-echo"}
	cfg.CORS.ExposedHeaders = []string{"x-echo"}
	cfg.CORS.MaxAge = 90 * time.Second
	f := newFixture(t, fixtureOpts{cfg: &cfg})
	url := "http://" + f.addr + mEcho
	body := frame(0, marshal(t, wrapperspb.String("hi")))
	web := http.Header{"Content-Type": {"application/grpc-web+proto"}, "X-Grpc-Web": {"1"}}
	with := func(h http.Header, kv ...string) http.Header {
		h = h.Clone()
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	preflight := http.Header{"Access-Control-Request-Method": {"POST"}}
	for _, tc := range []struct {
		name   string
		method string
		h      http.Header
		status int
		check  func(t *testing.T, h http.Header)
	}{
		{"no origin", "POST", web, 200, nil},
		{"same origin", "POST", with(web, "Origin", "http://"+f.addr), 200, func(t *testing.T, h http.Header) {
			if h.Get("Access-Control-Allow-Origin") != "" {
				t.Error("CORS headers on a same-origin answer")
			}
		}},
		{"allowed origin", "POST", with(web, "Origin", "https://app.example.com"), 200, func(t *testing.T, h http.Header) {
			if h.Get("Access-Control-Allow-Origin") != "https://app.example.com" || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Grpc-Status") || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "X-Echo") {
				t.Errorf("headers %v", h)
			}
		}},
		{"other origin", "POST", with(web, "Origin", "https://evil.example.com"), 403, nil},
		{"preflight", "OPTIONS", with(preflight, "Origin", "https://app.example.com", "Access-Control-Request-Headers", "content-type,x-grpc-web,x-echo"), 204, func(t *testing.T, h http.Header) {
			if h.Get("Access-Control-Allow-Origin") != "https://app.example.com" || h.Get("Access-Control-Allow-Methods") != "POST" ||
				h.Get("Access-Control-Allow-Headers") != "content-type, x-grpc-web, x-echo" || h.Get("Access-Control-Max-Age") != "90" {
				t.Errorf("headers %v", h)
			}
		}},
		{"preflight, header not allowed", "OPTIONS", with(preflight, "Origin", "https://app.example.com", "Access-Control-Request-Headers", "x-secret"), 403, nil},
		{"preflight, method not allowed", "OPTIONS", with(preflight, "Origin", "https://app.example.com", "Access-Control-Request-Method", "DELETE"), 403, nil},
		{"preflight, other origin", "OPTIONS", with(preflight, "Origin", "https://evil.example.com"), 403, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, b := rawCall(t, h1Client(), tc.method, url, tc.h, body)
			if res.StatusCode != tc.status {
				t.Fatalf("HTTP %s: %s", res.Status, b)
			}
			if tc.check != nil {
				tc.check(t, res.Header)
			}
		})
	}
}

func TestCardinality(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	one := frame(0, marshal(t, wrapperspb.Int32(1)))
	oneString := frame(0, marshal(t, wrapperspb.String("x")))
	web := connReuse(t)
	for _, tc := range []struct {
		name   string
		method string
		body   []byte
		status string
	}{
		{"unary, one message", mEcho, oneString, "0"},
		{"unary, no message", mEcho, nil, "12"},
		{"unary, two messages", mEcho, append(append([]byte(nil), oneString...), oneString...), "12"},
		{"server stream, one message", mCount, one, "0"},
		{"server stream, no message", mCount, nil, "12"},
		{"server stream, two messages", mCount, append(append([]byte(nil), one...), one...), "12"},
	} {
		for _, p := range []struct {
			name   string
			client *http.Client
			ctype  string
		}{{"grpc", h2cClient(), "application/grpc"}, {"grpc-web http1", web.client, "application/grpc-web"}} {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				res, body := rawCall(t, p.client, "POST", "http://"+f.addr+tc.method, http.Header{"Content-Type": {p.ctype}}, tc.body)
				got := res.Header.Get("Grpc-Status") + res.Trailer.Get("Grpc-Status")
				if _, tr := readFrames(t, body); tr != nil {
					got += tr.Get("grpc-status")
				}
				if got != tc.status {
					t.Errorf("grpc-status %q, want %q", got, tc.status)
				}
			})
		}
	}
	if web.conns() != 1 {
		t.Errorf("gRPC-Web HTTP/1.1 calls used %d connections, want 1 (keep-alive)", web.conns())
	}
}

// reuseClient is an HTTP/1.1 client that counts the connections it opens
// and sees when the server closes one.
type reuseClient struct {
	client *http.Client
	opened *atomic.Int32
	closed chan struct{} // gets a value each time a connection's read fails
}

func (c reuseClient) conns() int { return int(c.opened.Load()) }

// closeSeenConn reports the first failed read (EOF or reset: the server
// closed the connection) on closed.
type closeSeenConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *closeSeenConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { c.closed <- struct{}{} })
	}
	return n, err
}

func connReuse(t *testing.T) reuseClient {
	var n atomic.Int32
	var p http.Protocols
	p.SetHTTP1(true)
	closed := make(chan struct{}, 16)
	tr := &http.Transport{Protocols: &p, MaxConnsPerHost: 1, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.Add(1)
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &closeSeenConn{Conn: c, closed: closed}, nil
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return reuseClient{client: &http.Client{Transport: tr}, opened: &n, closed: closed}
}

// TestHTTP1KeepAlive checks that a gRPC-Web call with several request
// messages whose handler fails before reading them all leaves its HTTP/1.1
// connection fit for the next call, or closes it when too much is left to
// discard: before the response when nothing was sent yet, after it
// otherwise.
func TestHTTP1KeepAlive(t *testing.T) {
	f := newFixture(t, fixtureOpts{limits: kernel.Limits{MaxMessage: 64 << 10}})
	num := func(v int32) []byte { return frame(0, marshal(t, wrapperspb.Int32(v))) }
	str := func(v string) []byte { return frame(0, marshal(t, wrapperspb.String(v))) }
	pad := str(strings.Repeat("p", 60<<10))
	body := func(first []byte, pads int) []byte {
		b := append([]byte(nil), first...)
		for range pads {
			b = append(b, pad...)
		}
		return b
	}
	h := http.Header{"Content-Type": {"application/grpc-web"}}
	for _, tc := range []struct {
		name   string
		method string
		good   []byte
		bad    []byte
		conns  int // after a good call, the bad one and a good one
	}{
		{"failed before answering, little unread", mSum, num(1), body(append(num(5), num(-1)...), 3), 1},
		{"failed before answering, too much unread", mSum, num(1), body(append(num(5), num(-1)...), 6), 2},
		{"failed after answering, little unread", mChat, str("x"), body(append(str("a"), str("stop")...), 3), 1},
		{"failed after answering, too much unread", mChat, str("x"), body(append(str("a"), str("stop")...), 6), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connReuse(t)
			var badClose bool // the server asked to close after the bad call
			for i, b := range [][]byte{tc.good, tc.bad, tc.good} {
				res, out := rawCall(t, c.client, "POST", "http://"+f.addr+tc.method, h, b)
				if i == 1 {
					badClose = res.Close
					if tc.conns == 2 && !badClose {
						// The server closes the connection after a
						// response whose headers could not say so: wait
						// until the client has seen it, or its next call
						// may race onto the closed connection (a race
						// of HTTP/1.1 keep-alive that Go's client does
						// not retry for a POST).
						select {
						case <-c.closed:
							// Seen by the connection; the transport may
							// not have dropped it from its pool yet.
							c.client.CloseIdleConnections()
						case <-time.After(10 * time.Second):
							t.Fatal("the server did not close the connection after the bad call")
						}
					}
				}
				_, tr := readFrames(t, out)
				st := res.Header.Get("Grpc-Status")
				if tr != nil {
					st = tr.Get("grpc-status")
				}
				want := "0"
				if i == 1 {
					want = "3"
				}
				if st != want {
					t.Fatalf("call %d: grpc-status %q, want %q (%s %v %q)", i, st, want, res.Status, res.Header, out)
				}
			}
			switch got := c.conns(); {
			case tc.conns == 1 && badClose:
				t.Errorf("the server closed the connection after the bad call (%d connections), want it kept", got)
			case tc.conns == 1 && got == 2:
				// Go's client reuses a connection only if its own write
				// of the request finished within 50ms of the response's
				// end; on a loaded machine it may not have, and it dials
				// again. The server did not ask to close (checked above).
				t.Logf("the client dialled again (its request write finished late); the server kept the connection")
			case got != tc.conns:
				t.Errorf("%d connections, want %d", got, tc.conns)
			}
		})
	}
}
