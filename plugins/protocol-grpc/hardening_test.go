package grpc_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	grpcplugin "github.com/axonrpc/axon/plugins/protocol-grpc"
)

// hardLimits are the small limits of the hardening tests.
var hardLimits = kernel.Limits{
	RequestTimeout: 200 * time.Millisecond,
	// Long enough that a loaded machine's pause between a test's calls
	// does not close the connection; TestIdleTimeout sets its own.
	IdleTimeout:      10 * time.Second,
	ControlFrameRate: 50,
}

// waitFor polls cond until it holds; the bound is a hang guard, not a
// threshold.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// h2Peer is a raw HTTP/2 client: a framer over a TCP connection that has
// sent the preface and its SETTINGS.
type h2Peer struct {
	c    net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	next uint32 // next stream id

	mu       sync.Mutex
	statuses map[uint32]string // grpc-status per stream
	closed   chan struct{}     // the server closed the connection
}

func newH2Peer(t *testing.T, addr string) *h2Peer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &h2Peer{c: c, next: 1, statuses: map[uint32]string{}, closed: make(chan struct{})}
	p.fr = http2.NewFramer(c, c)
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.enc = hpack.NewEncoder(&p.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go p.read()
	return p
}

// read reads frames until the connection fails, recording grpc-status.
func (p *h2Peer) read() {
	defer close(p.closed)
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			return
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			if v := h.PseudoValue("status"); v != "" && v != "200" {
				continue
			}
			for _, hf := range h.Fields {
				if hf.Name == "grpc-status" {
					p.mu.Lock()
					p.statuses[h.StreamID] = hf.Value
					p.mu.Unlock()
				}
			}
		}
	}
}

func (p *h2Peer) status(id uint32) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.statuses[id]
	return v, ok
}

// headers opens a gRPC call to path and returns its stream id.
func (p *h2Peer) headers(path string, endStream bool) (uint32, error) {
	p.hbuf.Reset()
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", path}, {":authority", "x"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		p.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	id := p.next
	p.next += 2
	return id, p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndHeaders: true, EndStream: endStream})
}

// waitClosed waits for the server to close the peer's connection.
func (p *h2Peer) waitClosed(t *testing.T, what string) {
	t.Helper()
	select {
	case <-p.closed:
	case <-time.After(15 * time.Second): // a hang guard
		t.Fatalf("%s: the server did not close the connection", what)
	}
}

// TestRequestTimeout: a unary or server-streaming call whose request does
// not arrive within request_timeout is answered DEADLINE_EXCEEDED, and its
// handler goroutine ends.
func TestRequestTimeout(t *testing.T) {
	msg := frame(0, marshal(t, wrapperspb.String("hi")))
	for _, tc := range []struct {
		name string
		path string
		data []byte // sent without END_STREAM
	}{
		{"unary, headers only", mEcho, nil},
		{"unary, message without end of stream", mEcho, msg},
		{"unary, half a message", mEcho, msg[:4]},
		{"server streaming, headers only", mCount, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{limits: hardLimits})
			p := newH2Peer(t, f.addr)
			// The connection is up once a complete call has been answered.
			id, _ := p.headers(mEcho, false)
			p.fr.WriteData(id, true, msg)
			waitFor(t, "a first call", func() bool { _, ok := p.status(id); return ok })
			base := runtime.NumGoroutine()
			const calls = 20
			var ids []uint32
			for range calls {
				id, err := p.headers(tc.path, false)
				if err != nil {
					t.Fatal(err)
				}
				if tc.data != nil {
					p.fr.WriteData(id, false, tc.data)
				}
				ids = append(ids, id)
			}
			for _, id := range ids {
				waitFor(t, "a status", func() bool { _, ok := p.status(id); return ok })
				if st, _ := p.status(id); st != fmt.Sprint(int(codes.DeadlineExceeded)) {
					t.Errorf("stream %d: grpc-status %s, want DEADLINE_EXCEEDED", id, st)
				}
			}
			waitFor(t, "the handlers to end", func() bool { return runtime.NumGoroutine() <= base+2 })
		})
	}

	// Streams with a client side are not cut: their messages are the stream.
	t.Run("bidi stream idle longer than request_timeout", func(t *testing.T) {
		f := newFixture(t, fixtureOpts{limits: hardLimits})
		cc := dial(t, f.addr)
		st, err := cc.NewStream(ctxT(t), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, mChat)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * hardLimits.RequestTimeout)
		if err := st.SendMsg(wrapperspb.String("late")); err != nil {
			t.Fatal(err)
		}
		var got wrapperspb.StringValue
		if err := st.RecvMsg(&got); err != nil || got.Value != "re: late" {
			t.Fatalf("got %q, %v", got.Value, err)
		}
		st.CloseSend()
	})
}

// TestHTTP1BodyCut: a gRPC-Web request body over HTTP/1.1 that never ends
// is cut, and its connection closed.
func TestHTTP1BodyCut(t *testing.T) {
	msg := frame(0, marshal(t, wrapperspb.Int32(1)))
	for _, tc := range []struct {
		name   string
		path   string
		chunks [][]byte // then nothing more
	}{
		{"unary, no body", mEcho, nil},
		{"unary, half a message", mEcho, [][]byte{msg[:3]}},
		{"client streaming, one message then nothing", mSum, [][]byte{msg}},
		{"client streaming, half a message", mSum, [][]byte{msg[:3]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{limits: hardLimits})
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var req strings.Builder
			fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web\r\nTransfer-Encoding: chunked\r\n\r\n", tc.path)
			for _, ch := range tc.chunks {
				fmt.Fprintf(&req, "%x\r\n%s\r\n", len(ch), ch)
			}
			io.WriteString(c, req.String())
			c.SetReadDeadline(time.Now().Add(15 * time.Second)) // a hang guard
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			st := res.Header.Get("Grpc-Status")
			if st == "" {
				_, tr := readFrames(t, body)
				st = tr.Get("Grpc-Status")
			}
			if st != fmt.Sprint(int(codes.DeadlineExceeded)) {
				t.Errorf("grpc-status %q, want DEADLINE_EXCEEDED (%v)", st, res.Header)
			}
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Error("the connection stayed open")
			}
		})
	}
}

// TestIdleTimeout: connections without calls are closed after idle_timeout,
// HTTP/2 ones right after the preface included.
func TestIdleTimeout(t *testing.T) {
	lim := hardLimits
	lim.IdleTimeout = 300 * time.Millisecond
	f := newFixture(t, fixtureOpts{limits: lim})
	t.Run("h2c after the preface", func(t *testing.T) {
		p := newH2Peer(t, f.addr)
		p.waitClosed(t, "idle h2c")
	})
	t.Run("h2c after a call", func(t *testing.T) {
		p := newH2Peer(t, f.addr)
		id, _ := p.headers(mEcho, false)
		p.fr.WriteData(id, true, frame(0, marshal(t, wrapperspb.String("hi"))))
		p.waitClosed(t, "h2c after a call")
		if st, _ := p.status(id); st != "0" {
			t.Errorf("call: grpc-status %q", st)
		}
	})
	t.Run("HTTP/1.1 keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("the idle connection was not closed: %v", err)
		}
	})
}

// TestControlFrameFlood: a connection that sends frames that do no work
// faster than control_frame_rate is closed.
func TestControlFrameFlood(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(p *h2Peer, i int) error
	}{
		{"SETTINGS", func(p *h2Peer, i int) error { return p.fr.WriteSettings() }},
		{"PING", func(p *h2Peer, i int) error { return p.fr.WritePing(false, [8]byte{byte(i)}) }},
		{"rapid reset", func(p *h2Peer, i int) error {
			id, err := p.headers(mEcho, false)
			if err != nil {
				return err
			}
			return p.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}},
		{"WINDOW_UPDATE on the connection", func(p *h2Peer, i int) error { return p.fr.WriteWindowUpdate(0, 1) }},
		{"PRIORITY", func(p *h2Peer, i int) error {
			return p.fr.WritePriority(1, http2.PriorityParam{Weight: 1})
		}},
		{"unknown frame type", func(p *h2Peer, i int) error { return p.fr.WriteRawFrame(0x42, 0, 0, []byte("x")) }},
		{"empty DATA", func(p *h2Peer, i int) error {
			if i == 0 {
				if _, err := p.headers(mSum, false); err != nil {
					return err
				}
			}
			return p.fr.WriteData(1, false, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := hardLimits
			lim.IdleTimeout = 0 // only the budget closes the connection
			f := newFixture(t, fixtureOpts{limits: lim})
			p := newH2Peer(t, f.addr)
			for i := 0; ; i++ {
				select {
				case <-p.closed:
					return
				default:
				}
				if err := tc.send(p, i); err != nil {
					p.waitClosed(t, tc.name) // the write failed: closed
					return
				}
				// net/http alone closes some floods after 60,000 frames
				// or more (its queue of acks fills); the budget (50,
				// and what socket buffers hold meanwhile) far sooner.
				if i > 20_000 {
					t.Fatal("the connection was not closed")
				}
			}
		})
	}
}

// TestLegitUnderFrameBudget: grpc-go's own control frames (BDP pings,
// window updates) stay within the default control_frame_rate. (With the
// floods' rate of 50, a download under the race detector is cut now and
// then: grpc-go sends about a hundred pings and connection window updates
// in such a download, and not all follow data the server wrote.)
func TestLegitUnderFrameBudget(t *testing.T) {
	lim := hardLimits
	lim.ControlFrameRate = kernel.DefaultLimits().ControlFrameRate
	lim.RequestTimeout = kernel.DefaultLimits().RequestTimeout // a loaded machine may take 200ms to deliver a request
	f := newFixture(t, fixtureOpts{limits: lim})
	cc := dial(t, f.addr)
	ctx := ctxT(t)
	req := wrapperspb.String(strings.Repeat("x", 4<<10))
	for i := range 500 {
		if err := cc.Invoke(ctx, mEcho, req, new(wrapperspb.StringValue)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, mCount)
	if err != nil {
		t.Fatal(err)
	}
	st.SendMsg(wrapperspb.Int32(20000))
	st.CloseSend()
	n := 0
	for {
		var m wrapperspb.Int32Value
		if err := st.RecvMsg(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("after %d messages: %v", n, err)
		}
		n++
	}
	if n != 20000 {
		t.Errorf("%d messages", n)
	}
	if got := len(f.srv.(kernel.ConnReporter).Conns()); got != 1 {
		t.Errorf("%d connections, want the one", got)
	}
}

// TestBufferBudget: request messages are taken from the process-wide
// budget before they are read; an exhausted budget answers
// RESOURCE_EXHAUSTED, and every byte taken is given back.
func TestBufferBudget(t *testing.T) {
	f := newFixture(t, fixtureOpts{limits: kernel.Limits{MaxBuffered: 64 << 10, MaxMessage: 1 << 20}})
	cc := dial(t, f.addr)
	for _, tc := range []struct {
		name string
		size int
		hold int64 // bytes taken by others meanwhile
		code codes.Code
	}{
		{"within the budget", 32 << 10, 0, codes.OK},
		{"above the budget", 100 << 10, 0, codes.ResourceExhausted},
		{"budget taken by others", 1 << 10, 64 << 10, codes.ResourceExhausted},
		{"budget given back", 32 << 10, 0, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := f.d.Budget()
			if !b.Acquire(tc.hold) {
				t.Fatal("cannot take the budget")
			}
			defer b.Release(tc.hold)
			err := cc.Invoke(ctxT(t), mEcho, wrapperspb.String(strings.Repeat("x", tc.size)), new(wrapperspb.StringValue))
			if grpcstatus.Code(err) != tc.code {
				t.Errorf("got %v, want %v", err, tc.code)
			}
			if used := b.Used(); used != tc.hold {
				t.Errorf("budget used %d after the call, want %d", used, tc.hold)
			}
		})
	}
}

// TestWaitingCallsEvictedOldestFirst: calls waiting for their request are
// charged to the budget; when a new call finds it spent, the call that has
// waited longest fails with RESOURCE_EXHAUSTED to make room, so calls that
// never send their request cannot lock out a complete call.
func TestWaitingCallsEvictedOldestFirst(t *testing.T) {
	lim := hardLimits
	lim.RequestTimeout = time.Minute // only the budget ends these calls
	lim.MaxBuffered = 4 * grpcplugin.WaitCharge
	lim.MaxMessage = 1 << 10
	f := newFixture(t, fixtureOpts{limits: lim})
	p := newH2Peer(t, f.addr)
	var ids []uint32
	open := func() {
		t.Helper()
		id, err := p.headers(mEcho, false) // headers, and never the message
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// One at a time: the handlers of calls opened together may reach the
	// budget in any order, and the order they reach it in is their age.
	b := f.d.Budget()
	for n := int64(1); n <= 4; n++ {
		open()
		waitFor(t, fmt.Sprintf("%d calls waiting", n), func() bool { return b.Used() == n*grpcplugin.WaitCharge })
	}
	open() // the budget is spent: the first call makes room
	waitFor(t, "the first call to fail", func() bool { _, ok := p.status(ids[0]); return ok })

	// A complete call gets through, at the cost of the next oldest.
	cc := dial(t, f.addr)
	var got wrapperspb.StringValue
	if err := cc.Invoke(ctxT(t), mEcho, wrapperspb.String("hi"), &got); err != nil {
		t.Fatalf("a complete call failed: %v", err)
	}
	waitFor(t, "the second call to fail", func() bool { _, ok := p.status(ids[1]); return ok })
	for i, id := range ids {
		st, done := p.status(id)
		switch {
		case i < 2 && st != fmt.Sprint(int(codes.ResourceExhausted)):
			t.Errorf("call %d: grpc-status %q, want RESOURCE_EXHAUSTED", i, st)
		case i >= 2 && done:
			t.Errorf("call %d ended (grpc-status %s); it should still be waiting", i, st)
		}
	}
	if used := b.Used(); used != 3*grpcplugin.WaitCharge {
		t.Errorf("budget used %d, want three waiting calls' %d", used, 3*grpcplugin.WaitCharge)
	}
	p.c.Close() // the waiting calls end with their connection, and give back their charge
	waitFor(t, "the budget to be given back", func() bool { return b.Used() == 0 })
}

// TestMaxConnectionAge: on a connection past max_connection_age, the next
// call is answered, then the connection goes away (GOAWAY, close); a client
// keeps calling across the ages.
func TestMaxConnectionAge(t *testing.T) {
	f := newFixture(t, fixtureOpts{limits: kernel.Limits{MaxConnectionAge: 300 * time.Millisecond}})
	p := newH2Peer(t, f.addr)
	time.Sleep(400 * time.Millisecond) // 300ms + 10%
	id, _ := p.headers(mEcho, false)
	p.fr.WriteData(id, true, frame(0, marshal(t, wrapperspb.String("hi"))))
	p.waitClosed(t, "aged connection")
	if st, _ := p.status(id); st != "0" {
		t.Errorf("call on the aged connection: grpc-status %q", st)
	}

	cc := dial(t, f.addr)
	end := time.Now().Add(time.Second)
	for time.Now().Before(end) {
		if err := cc.Invoke(ctxT(t), mEcho, wrapperspb.String("hi"), new(wrapperspb.StringValue), grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
