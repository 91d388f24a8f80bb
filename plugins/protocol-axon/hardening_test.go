package native_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/axonwire"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/kernel/transporttest"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
)

// Hostile raw peers against a server with small limits: every limit of the
// server's hardening (see the README's Limits) has a test here.

const (
	bigResponse  = 256 << 10
	hugeResponse = 2 << 20 // far more than the kernel's buffers hold
)

// Hold's handlers wait for holdGate; holdRunning counts those that started.
var (
	holdGate    chan struct{}
	holdRunning atomic.Int64
)

func hardenedService() *kernel.ServiceDesc {
	return kernel.NewService("h.S",
		kernel.Unary("Echo", func(_ context.Context, m *msg) (*msg, error) { return m, nil }),
		kernel.Unary("Hold", func(_ context.Context, m *msg) (*msg, error) {
			holdRunning.Add(1)
			<-holdGate
			return m, nil
		}),
		kernel.Unary("Big", func(_ context.Context, m *msg) (*msg, error) {
			return &msg{S: strings.Repeat("b", bigResponse)}, nil
		}),
		kernel.Unary("Huge", func(_ context.Context, m *msg) (*msg, error) {
			return &msg{S: strings.Repeat("h", hugeResponse)}, nil
		}),
		kernel.BidiStreaming("Chat", func(st kernel.BidiStreamingServer[msg, msg]) error {
			for {
				m, err := st.Recv()
				if err != nil {
					return nil
				}
				if err := st.Send(m); err != nil {
					return err
				}
			}
		}),
	)
}

type hardened struct {
	addr string
	d    *kernel.Dispatcher
}

// startHardened serves the hardened service with lim; sockBuf, when above
// 0, shrinks the server's socket send buffers, so that a peer that does
// not read backs output up into the server quickly.
func startHardened(t *testing.T, lim kernel.Limits, sockBuf int) *hardened {
	t.Helper()
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{hardenedService()})
	if err != nil {
		t.Fatal(err)
	}
	d := kernel.NewDispatcher(table, nil, []kernel.Codec{fpCodec{}}, lim, slog.New(slog.DiscardHandler))
	srv := native.New(native.DefaultConfig()).NewServer(d)
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
			if sockBuf > 0 {
				c.(*net.TCPConn).SetWriteBuffer(sockBuf)
			}
			go srv.ServeConn(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &hardened{addr: ln.Addr().String(), d: d}
}

// dial connects a raw peer; with sockBuf above 0 its receive buffer is
// that small.
func (h *hardened) dial(t *testing.T, sockBuf int) (*transporttest.Peer, *net.TCPConn) {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := c.(*net.TCPConn)
	if sockBuf > 0 {
		tc.SetReadBuffer(sockBuf)
	}
	t.Cleanup(func() { c.Close() })
	return transporttest.NewPeer(t, c), tc
}

func unaryCall(id uint32, method, text string) []byte {
	b := transporttest.AppendFrame(nil, axonwire.FrameHeaders, 0, id, transporttest.Headers(0, method, "fp"))
	return transporttest.AppendFrame(b, axonwire.FrameData, axonwire.FlagEndStream, id, []byte(text))
}

// goAway decodes a GOAWAY: last stream, code, message.
func goAway(t *testing.T, f transporttest.Frame) (uint32, status.Code, string) {
	t.Helper()
	last, n := binary.Uvarint(f.Payload)
	code, m := binary.Uvarint(f.Payload[n:])
	l, k := binary.Uvarint(f.Payload[n+m:])
	if n <= 0 || m <= 0 || k <= 0 {
		t.Fatalf("bad GOAWAY payload %x", f.Payload)
	}
	return uint32(last), status.Code(code), string(f.Payload[n+m+k : n+m+k+int(l)])
}

// readGoAway reads frames until a GOAWAY and returns it.
func readGoAway(t *testing.T, p *transporttest.Peer, within time.Duration) transporttest.Frame {
	t.Helper()
	p.SetReadDeadline(time.Now().Add(within))
	defer p.SetReadDeadline(time.Time{})
	for {
		f, err := p.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY within %v: %v", within, err)
		}
		if f.Type == axonwire.FrameGoAway {
			return f
		}
	}
}

// expectOpenThenClosed checks that the connection is still open (nothing
// to read for a moment) and then that the server closes it within within.
func expectClosedQuiet(t *testing.T, c *net.TCPConn, within time.Duration) {
	t.Helper()
	// Read without a Peer's buffer: only EOF or a reset count.
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 64<<10)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server did not close the connection within %v", within)
		}
		return
	}
}

// TestWriteTimeoutClosesNonReader: a peer that asks for large responses
// and never reads is closed once the server's writes made no progress for
// write_timeout; reading then finds the connection closed.
func TestWriteTimeoutClosesNonReader(t *testing.T) {
	h := startHardened(t, kernel.Limits{WriteTimeout: 300 * time.Millisecond}, 16<<10)
	p, c := h.dial(t, 16<<10)
	p.Handshake()
	var b []byte
	for id := uint32(1); id <= 39; id += 2 {
		b = append(b, unaryCall(id, "/h.S/Big", "x")...)
	}
	p.Send(b)
	time.Sleep(1500 * time.Millisecond) // well over write_timeout, without reading
	// Had the server kept the connection, reading would let its 5 MiB of
	// responses through and it would stay open.
	expectClosedQuiet(t, c, 3*time.Second)
}

// TestConnBacklogRefusesNewCalls: once a connection's unsent output is over
// max_conn_buffered, a new call on it is refused (retryable) rather than
// run, and the server stops reading until the peer reads; when it does,
// everything arrives, and the connection serves again.
func TestConnBacklogRefusesNewCalls(t *testing.T) {
	h := startHardened(t, kernel.Limits{MaxConnBuffered: 64 << 10, WriteTimeout: 10 * time.Second}, 16<<10)
	p, c := h.dial(t, 16<<10)
	p.Handshake()
	p.Send(unaryCall(1, "/h.S/Huge", "x"))
	// The response is queued whole, in one write: once its first bytes
	// arrive, the rest (far more than the kernel's buffers hold) is the
	// server's backlog.
	for deadline := time.Now().Add(20 * time.Second); readable(t, c) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) { // a hang guard, not a measure
			t.Fatal("the big response did not begin")
		}
	}
	var b []byte
	for id := uint32(3); id <= 11; id += 2 {
		b = append(b, unaryCall(id, "/h.S/Echo", "late")...)
	}
	p.Send(b)
	res := p.Results(6, nil)
	if r := res[1]; r.Code != status.OK || len(r.Data) != hugeResponse {
		t.Errorf("stream 1: %v %q with %d bytes, want OK with %d", r.Code, r.Msg, len(r.Data), hugeResponse)
	}
	// The first late call found the backlog; the others were read once
	// the peer read, and found it drained or not.
	if r := res[3]; !r.Refused || r.Code != status.Unavailable || !strings.Contains(r.Msg, "max_conn_buffered") {
		t.Errorf("stream 3: %+v, want a refusal naming max_conn_buffered", r)
	}
	for id := uint32(5); id <= 11; id += 2 {
		r := res[id]
		refused := r.Refused && r.Code == status.Unavailable && strings.Contains(r.Msg, "max_conn_buffered")
		if !refused && (r.Code != status.OK || string(r.Data) != "late") {
			t.Errorf("stream %d: %+v, want OK or a refusal naming max_conn_buffered", id, r)
		}
	}
	// The connection serves again: everything was read, and nothing is
	// counted as still owed to it.
	p.Send(unaryCall(13, "/h.S/Echo", "again"))
	if r := p.Results(1, nil)[13]; r.Code != status.OK || string(r.Data) != "again" {
		t.Fatalf("after the backlog: %+v", r)
	}
}

// TestConnBacklogStopsReading: a peer that goes on calling and never reads
// does not make the server read (and answer) without bound: with its
// output over max_conn_buffered, the server stops reading, so the peer's
// writes stall, and drops the connection once it stayed over the limit for
// write_timeout.
func TestConnBacklogStopsReading(t *testing.T) {
	h := startHardened(t, kernel.Limits{MaxConnBuffered: 64 << 10, WriteTimeout: time.Second}, 16<<10)
	p, c := h.dial(t, 16<<10)
	p.Handshake()
	var b []byte
	for id := uint32(1); id <= 7; id += 2 {
		b = append(b, unaryCall(id, "/h.S/Big", "x")...)
	}
	p.Send(b)
	time.Sleep(300 * time.Millisecond)
	const calls = 4000 // 64 MiB, far more than socket buffers hold
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		msg := strings.Repeat("m", 16<<10)
		for id := uint32(9); n < calls; id += 2 {
			if _, err := c.Write(unaryCall(id, "/h.S/Echo", msg)); err != nil {
				return
			}
			n++
		}
	}()
	// Without reading: the server's reset fails the peer's stalled write.
	select {
	case n := <-sent:
		if n >= calls {
			t.Fatalf("the server read all %d calls of a peer that does not read", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not drop the connection within 5s")
	}
	expectClosedQuiet(t, c, time.Second)
}

// TestConnPromisedOutput: calls that run count against max_conn_buffered
// with their messages until their answers are queued, so a peer cannot make
// handlers hold more than about that much by sending calls faster than
// their answers back up.
func TestConnPromisedOutput(t *testing.T) {
	h := startHardened(t, kernel.Limits{MaxConnBuffered: 256 << 10}, 0)
	holdGate = make(chan struct{})
	holdRunning.Store(0)
	p, _ := h.dial(t, 0)
	p.Handshake()
	msg := strings.Repeat("m", 64<<10)
	var b []byte
	for id := uint32(1); id <= 39; id += 2 {
		b = append(b, unaryCall(id, "/h.S/Hold", msg)...)
	}
	p.Send(b)
	time.Sleep(300 * time.Millisecond)
	if n := holdRunning.Load(); n > 5 {
		t.Errorf("%d handlers of 64 KiB calls running with max_conn_buffered 256 KiB, want at most 5", n)
	}
	close(holdGate)
	ok, refused := 0, 0
	for id, r := range p.Results(20, nil) {
		switch {
		case r.Code == status.OK && len(r.Data) == len(msg):
			ok++
		case r.Refused && strings.Contains(r.Msg, "max_conn_buffered"):
			refused++
		default:
			t.Errorf("stream %d: %v %q, want OK or a refusal naming max_conn_buffered", id, r.Code, r.Msg)
		}
	}
	if ok == 0 || refused == 0 {
		t.Errorf("%d served and %d refused, want some of each", ok, refused)
	}
}

// TestRequestTimeout: a call whose request does not arrive within
// request_timeout is reset; a frame stalled halfway closes the connection.
func TestRequestTimeout(t *testing.T) {
	h := startHardened(t, kernel.Limits{RequestTimeout: 200 * time.Millisecond}, 0)
	t.Run("headers without message", func(t *testing.T) {
		p, _ := h.dial(t, 0)
		p.Handshake()
		p.Send(transporttest.AppendFrame(nil, axonwire.FrameHeaders, 0, 1, transporttest.Headers(0, "/h.S/Echo", "fp", "k", strings.Repeat("v", 4000))))
		p.SetReadDeadline(time.Now().Add(3 * time.Second))
		r := p.Results(1, nil)[1]
		if r.Code != status.DeadlineExceeded || !strings.Contains(r.Msg, "request_timeout") {
			t.Fatalf("half-open call: %+v, want DEADLINE_EXCEEDED naming request_timeout", r)
		}
		// Its message, late, is skipped; the connection serves on.
		p.Send(transporttest.AppendFrame(nil, axonwire.FrameData, axonwire.FlagEndStream, 1, []byte("late")))
		p.Send(unaryCall(3, "/h.S/Echo", "next"))
		if r := p.Results(1, nil)[3]; r.Code != status.OK || string(r.Data) != "next" {
			t.Fatalf("next call: %+v", r)
		}
	})
	stalled := map[string][]byte{
		"message stalled": append(transporttest.AppendFrame(nil, axonwire.FrameHeaders, 0, 1, transporttest.Headers(0, "/h.S/Echo", "fp")),
			append(transporttest.FrameHeader(1000, axonwire.FrameData, axonwire.FlagEndStream, 1), "only some"...)...),
		"headers stalled": append(transporttest.FrameHeader(1000, axonwire.FrameHeaders, 0, 1), 0, 5),
	}
	for name, b := range stalled {
		t.Run(name, func(t *testing.T) {
			p, c := h.dial(t, 0)
			p.Handshake()
			p.Send(b)
			expectClosedQuiet(t, c, 3*time.Second)
		})
	}
}

// TestHandshakeTimeoutAsAWhole: the preface and the SETTINGS must arrive
// within handshake_timeout together, however they trickle in.
func TestHandshakeTimeoutAsAWhole(t *testing.T) {
	h := startHardened(t, kernel.Limits{HandshakeTimeout: 500 * time.Millisecond}, 0)
	hello := transporttest.AppendFrame([]byte(axonwire.Preface), axonwire.FrameSettings, 0, 0, []byte{1, 0x80, 0x80, 0x04})
	for name, at := range map[string]int{"slow preface": 0, "slow settings": axonwire.PrefaceLen} {
		t.Run(name, func(t *testing.T) {
			_, c := h.dial(t, 0)
			c.Write(hello[:at])
			go func() {
				for i := at; i < len(hello); i++ { // 1 byte every 100 ms: done after the timeout
					time.Sleep(100 * time.Millisecond)
					if _, err := c.Write(hello[i : i+1]); err != nil {
						return
					}
				}
			}()
			start := time.Now()
			expectClosedQuiet(t, c, 3*time.Second)
			if d := time.Since(start); d > time.Duration(len(hello)-at)*100*time.Millisecond {
				t.Fatalf("closed after %v, only once the handshake had trickled in", d)
			}
		})
	}
}

// TestIdleTimeout: a connection with no call for idle_timeout gets GOAWAY
// and is closed; calls keep it open meanwhile.
func TestIdleTimeout(t *testing.T) {
	h := startHardened(t, kernel.Limits{IdleTimeout: 300 * time.Millisecond}, 0)
	p, c := h.dial(t, 0)
	p.Handshake()
	for i := range 4 { // 800 ms of calls 200 ms apart
		id := uint32(2*i + 1)
		p.Send(unaryCall(id, "/h.S/Echo", "x"))
		if r := p.Results(1, nil)[id]; r.Code != status.OK {
			t.Fatalf("call %d: %+v", id, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	f := readGoAway(t, p, 3*time.Second)
	if last, code, msg := goAway(t, f); last != 7 || code != status.Unavailable || !strings.Contains(msg, "idle") {
		t.Fatalf("GOAWAY last %d, %v %q; want last 7, UNAVAILABLE, idle", last, code, msg)
	}
	expectClosedQuiet(t, c, 3*time.Second)
}

// TestMaxConnectionAge: an old connection is told to go away (two steps:
// GOAWAY and a PING, then the final GOAWAY) and closed once drained.
func TestMaxConnectionAge(t *testing.T) {
	h := startHardened(t, kernel.Limits{MaxConnectionAge: 300 * time.Millisecond}, 0)
	p, c := h.dial(t, 0)
	p.Handshake()
	p.Send(unaryCall(1, "/h.S/Echo", "x"))
	if r := p.Results(1, nil)[1]; r.Code != status.OK {
		t.Fatalf("call: %+v", r)
	}
	if last, _, _ := goAway(t, readGoAway(t, p, 3*time.Second)); last != 1<<32-1 {
		t.Fatalf("first GOAWAY names %d, want the largest id", last)
	}
	f, err := p.ReadFrame()
	if err != nil || f.Type != axonwire.FramePing {
		t.Fatalf("after the first GOAWAY: %+v, %v; want the drain PING", f, err)
	}
	p.Send(transporttest.AppendFrame(nil, axonwire.FramePing, axonwire.FlagAck, 0, f.Payload))
	if last, code, msg := goAway(t, readGoAway(t, p, 3*time.Second)); last != 1 || code != status.Unavailable || !strings.Contains(msg, "max_connection_age") {
		t.Fatalf("final GOAWAY: last %d, %v %q", last, code, msg)
	}
	expectClosedQuiet(t, c, 3*time.Second)
}

// TestControlFrameFlood: a flood of any frame that does no work, or an
// open-and-cancel loop, gets GOAWAY (RESOURCE_EXHAUSTED, too many control
// frames) and the connection is closed.
func TestControlFrameFlood(t *testing.T) {
	h := startHardened(t, kernel.Limits{ControlFrameRate: 50}, 0)
	frame := func(typ, flags byte, stream uint32, payload []byte) func(uint32) []byte {
		return func(uint32) []byte { return transporttest.AppendFrame(nil, typ, flags, stream, payload) }
	}
	floods := []struct {
		name string
		next func(i uint32) []byte
	}{
		{"unknown type", frame(0x7f, 0, 0, []byte{1})},
		{"ping", frame(axonwire.FramePing, 0, 0, make([]byte, 8))},
		{"ping ack nobody asked for", frame(axonwire.FramePing, axonwire.FlagAck, 0, make([]byte, 8))},
		{"settings again", frame(axonwire.FrameSettings, 0, 0, nil)},
		{"window update on stream 0", frame(axonwire.FrameWindow, 0, 0, []byte{100})},
		{"window update on an unknown stream", frame(axonwire.FrameWindow, 0, 7, []byte{100})},
		{"cancel of an unknown stream", frame(axonwire.FrameCancel, 0, 1<<30, nil)},
		{"data for an unknown stream", frame(axonwire.FrameData, axonwire.FlagEndStream, 1<<30, []byte("x"))},
		{"unary open and cancel", func(i uint32) []byte {
			id := 2*i + 1
			b := transporttest.AppendFrame(nil, axonwire.FrameHeaders, 0, id, transporttest.Headers(0, "/h.S/Echo", "fp"))
			return transporttest.AppendFrame(b, axonwire.FrameCancel, 0, id, nil)
		}},
		{"stream open and cancel", func(i uint32) []byte {
			id := 2*i + 1
			b := transporttest.AppendFrame(nil, axonwire.FrameHeaders, axonwire.FlagStream, id, transporttest.Headers(0, "/h.S/Chat", "fp"))
			return transporttest.AppendFrame(b, axonwire.FrameCancel, 0, id, nil)
		}},
	}
	for _, fl := range floods {
		t.Run(fl.name, func(t *testing.T) {
			p, c := h.dial(t, 0)
			p.Handshake()
			go func() {
				for i := range uint32(100000) {
					if _, err := c.Write(fl.next(i)); err != nil {
						return
					}
				}
			}()
			_, code, msg := goAway(t, readGoAway(t, p, 5*time.Second))
			if code != status.ResourceExhausted || !strings.Contains(msg, "too many control frames") {
				t.Fatalf("GOAWAY %v %q, want RESOURCE_EXHAUSTED, too many control frames", code, msg)
			}
			p.ExpectClosed(5 * time.Second)
		})
	}
	t.Run("within budget", func(t *testing.T) {
		p, _ := h.dial(t, 0)
		p.Handshake()
		var b []byte
		for range 30 {
			b = transporttest.AppendFrame(b, axonwire.FramePing, 0, 0, make([]byte, 8))
		}
		p.Send(append(b, unaryCall(1, "/h.S/Echo", "still here")...))
		if r := p.Results(1, nil)[1]; r.Code != status.OK || string(r.Data) != "still here" {
			t.Fatalf("call after 30 pings: %+v", r)
		}
	})
}

// TestBufferBudget: with the process-wide budget of buffered bytes spent, a
// call gets RESOURCE_EXHAUSTED before its message is read, and calls are
// served again once the bytes are released; served calls give back all
// they took.
func TestBufferBudget(t *testing.T) {
	h := startHardened(t, kernel.Limits{MaxBuffered: 1 << 20}, 0)
	budget := h.d.Budget()
	p, _ := h.dial(t, 0)
	p.Handshake()
	taken := int64(1<<20 - 100)
	if !budget.Acquire(taken) {
		t.Fatal("could not take the budget")
	}
	p.Send(unaryCall(1, "/h.S/Echo", strings.Repeat("m", 1000)))
	if r := p.Results(1, nil)[1]; r.Code != status.ResourceExhausted || !strings.Contains(r.Msg, "max_buffered") {
		t.Fatalf("over budget: %+v, want RESOURCE_EXHAUSTED naming max_buffered", r)
	}
	// A stream's message over budget ends the stream likewise.
	b := transporttest.AppendFrame(nil, axonwire.FrameHeaders, axonwire.FlagStream, 3, transporttest.Headers(0, "/h.S/Chat", "fp"))
	p.Send(transporttest.AppendFrame(b, axonwire.FrameData, 0, 3, []byte(strings.Repeat("m", 1000))))
	if r := p.Results(1, nil)[3]; r.Code != status.ResourceExhausted {
		t.Fatalf("stream over budget: %+v, want RESOURCE_EXHAUSTED", r)
	}
	budget.Release(taken)
	p.Send(unaryCall(5, "/h.S/Echo", strings.Repeat("m", 1000)))
	if r := p.Results(1, nil)[5]; r.Code != status.OK {
		t.Fatalf("after release: %+v", r)
	}
	b = transporttest.AppendFrame(nil, axonwire.FrameHeaders, axonwire.FlagStream, 7, transporttest.Headers(0, "/h.S/Chat", "fp"))
	b = transporttest.AppendFrame(b, axonwire.FrameData, 0, 7, []byte("one"))
	p.Send(transporttest.AppendFrame(b, axonwire.FrameData, axonwire.FlagEndStream, 7, []byte("two")))
	if r := p.Results(1, nil)[7]; r.Code != status.OK {
		t.Fatalf("stream after release: %+v", r)
	}
	if n := budget.Used(); n != 0 {
		t.Fatalf("%d bytes of the budget still taken after the calls ended", n)
	}
}
