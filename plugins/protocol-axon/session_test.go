package native

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
)

// stringCodec encodes *string values as their bytes.
type stringCodec struct{}

func (stringCodec) Name() string { return "string" }
func (stringCodec) Marshal(dst []byte, v any) ([]byte, error) {
	return append(dst, *v.(*string)...), nil
}
func (stringCodec) Unmarshal(src []byte, v any) error { *v.(*string) = string(src); return nil }

type rawFrame struct {
	frameHeader
	payload []byte
}

// fakePeer is the server end of a session under test, driven by hand.
type fakePeer struct {
	t    *testing.T
	conn net.Conn
	in   chan rawFrame // frames the session sent
}

// startSession connects a session to a fake server announcing maxStreams.
func startSession(t *testing.T, maxStreams uint64) (*session, *fakePeer) {
	t.Helper()
	return startSessionWith(t, maxStreams, kernel.Limits{HandshakeTimeout: 5 * time.Second})
}

// startSessionWith is startSession with the client's limits.
func startSessionWith(t *testing.T, maxStreams uint64, lim kernel.Limits) (*session, *fakePeer) {
	t.Helper()
	return startSessionConn(t, maxStreams, lim, func(c net.Conn) net.Conn { return c })
}

// startSessionConn is startSessionWith over the client's end of the pipe as
// wrap returns it.
func startSessionConn(t *testing.T, maxStreams uint64, lim kernel.Limits, wrap func(net.Conn) net.Conn) (*session, *fakePeer) {
	t.Helper()
	cli, srv := net.Pipe()
	p := &fakePeer{t: t, conn: srv, in: make(chan rawFrame, 64)}
	go func() {
		defer close(p.in)
		var pre [prefaceLen]byte
		if _, err := io.ReadFull(srv, pre[:]); err != nil || pre != preface {
			return
		}
		for {
			var h [headerLen]byte
			if _, err := io.ReadFull(srv, h[:]); err != nil {
				return
			}
			f := rawFrame{frameHeader: parseHeader(h[:])}
			f.payload = make([]byte, f.length)
			if _, err := io.ReadFull(srv, f.payload); err != nil {
				return
			}
			if f.typ != frameSettings {
				p.in <- f
			}
		}
	}()
	settings := binary.AppendUvarint(nil, settingMaxStreams)
	settings = binary.AppendUvarint(settings, maxStreams)
	go srv.Write(append(appendHeader(preface[:len(preface):len(preface)], len(settings), frameSettings, 0, 0), settings...))
	s, err := newSession(wrap(cli), kernel.SessionOptions{Limits: lim, Endpoint: "pipe"}, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); srv.Close() })
	return s, p
}

// next returns the next frame the session sent.
func (p *fakePeer) next() rawFrame {
	p.t.Helper()
	select {
	case f, ok := <-p.in:
		if !ok {
			p.t.Fatal("session closed the connection")
		}
		return f
	case <-time.After(10 * time.Second):
		p.t.Fatal("timed out waiting for a frame from the session")
	}
	panic("unreachable")
}

func (p *fakePeer) expect(typ byte, stream uint32) rawFrame {
	p.t.Helper()
	f := p.next()
	if f.typ != typ || f.stream != stream {
		p.t.Fatalf("got frame type %d on stream %d, want type %d on stream %d", f.typ, f.stream, typ, stream)
	}
	return f
}

func (p *fakePeer) write(b []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

func trailers(stream uint32, code status.Code) []byte {
	return appendTrailers(nil, stream, code, "", nil, 0)
}

func data(stream uint32, msg string) []byte {
	return append(appendHeader(nil, len(msg), frameData, 0, stream), msg...)
}

type callResult struct {
	resp string
	err  error
}

func invoke(ctx context.Context, s *session, req string) chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		var resp string
		err := s.Invoke(ctx, &kernel.ClientCall{Method: "/t.S/M", Codec: stringCodec{}}, &req, &resp)
		ch <- callResult{resp, err}
	}()
	return ch
}

func wait(t *testing.T, ch chan callResult) callResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a call")
	}
	panic("unreachable")
}

// TestCancelWhileResponseArrives: a call given up on while its response is
// half read must not hand that response to a later call that reuses its
// state.
func TestCancelWhileResponseArrives(t *testing.T) {
	s, p := startSession(t, 100)
	ctx1, cancel1 := context.WithCancel(context.Background())
	r1 := invoke(ctx1, s, "one")
	p.expect(frameHeaders, 1)
	p.expect(frameData, 1)
	stale := "stale response for stream 1"
	// Half of stream 1's response: the session's reader now waits for the rest.
	p.write(data(1, stale)[:headerLen+4])
	cancel1()
	if r := wait(t, r1); status.CodeOf(r.err) != status.Canceled {
		t.Fatalf("cancelled call: %v", r.err)
	}
	p.expect(frameCancel, 1)

	r2 := invoke(context.Background(), s, "two")
	p.expect(frameHeaders, 2)
	p.expect(frameData, 2)
	var b []byte
	b = append(b, data(1, stale)[headerLen+4:]...)
	b = append(b, trailers(1, status.Canceled)...)
	b = append(b, data(2, "fresh")...)
	b = append(b, trailers(2, status.OK)...)
	p.write(b)
	if r := wait(t, r2); r.err != nil || r.resp != "fresh" {
		t.Fatalf("second call got %q, %v; want \"fresh\"", r.resp, r.err)
	}
}

// TestCancelledCallHoldsItsStream: the server counts a stream until its
// TRAILERS, so a call given up on keeps its stream slot until then and the
// session never exceeds the server's max_concurrent_streams.
func TestCancelledCallHoldsItsStream(t *testing.T) {
	s, p := startSession(t, 1)
	ctx1, cancel1 := context.WithCancel(context.Background())
	r1 := invoke(ctx1, s, "one")
	p.expect(frameHeaders, 1)
	p.expect(frameData, 1)
	cancel1()
	wait(t, r1)
	p.expect(frameCancel, 1)

	r2 := invoke(context.Background(), s, "two")
	select {
	case f := <-p.in:
		t.Fatalf("session sent frame type %d on stream %d while the server still ran stream 1", f.typ, f.stream)
	case <-time.After(100 * time.Millisecond):
	}
	p.write(trailers(1, status.Canceled))
	p.expect(frameHeaders, 2)
	p.expect(frameData, 2)
	p.write(append(data(2, "ok"), trailers(2, status.OK)...))
	if r := wait(t, r2); r.err != nil || r.resp != "ok" {
		t.Fatalf("second call: %q, %v", r.resp, r.err)
	}
}

// TestStreamIDsIncrease: concurrent calls put their stream ids on the wire in
// increasing order, as the server requires.
func TestStreamIDsIncrease(t *testing.T) {
	s, p := startSession(t, 1000)
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp string
			req := fmt.Sprint(i)
			s.Invoke(context.Background(), &kernel.ClientCall{Method: "/t.S/M", Codec: stringCodec{}}, &req, &resp)
		}()
	}
	var last uint32
	var out bytes.Buffer
	for range n {
		h := p.next()
		if h.typ != frameHeaders || h.stream <= last {
			t.Fatalf("frame type %d on stream %d after stream %d", h.typ, h.stream, last)
		}
		last = h.stream
		d := p.expect(frameData, h.stream)
		out.Write(data(h.stream, string(d.payload)))
		out.Write(trailers(h.stream, status.OK))
	}
	p.write(out.Bytes())
	wg.Wait()
}

// TestGoAwayRefusesLaterStreams: after GOAWAY, calls above the last stream
// the server will answer fail as refused, calls below it complete, and new
// calls are refused without being sent.
func TestGoAwayRefusesLaterStreams(t *testing.T) {
	s, p := startSession(t, 100)
	r1 := invoke(context.Background(), s, "one")
	p.expect(frameHeaders, 1)
	p.expect(frameData, 1)
	r2 := invoke(context.Background(), s, "two")
	p.expect(frameHeaders, 2)
	p.expect(frameData, 2)
	ga := binary.AppendUvarint(nil, 1)
	ga = binary.AppendUvarint(ga, uint64(status.Unavailable))
	ga = appendString(ga, "draining")
	p.write(append(appendHeader(nil, len(ga), frameGoAway, 0, 0), ga...))
	if r := wait(t, r2); !status.IsRefused(r.err) {
		t.Errorf("call above the go-away line: %v, want refused", r.err)
	}
	if s.Accepting() {
		t.Error("session still accepting after GOAWAY")
	}
	if r := wait(t, invoke(context.Background(), s, "three")); !status.IsRefused(r.err) {
		t.Errorf("call after GOAWAY: %v, want refused", r.err)
	}
	p.write(append(data(1, "one"), trailers(1, status.OK)...))
	if r := wait(t, r1); r.err != nil || r.resp != "one" {
		t.Errorf("call below the go-away line: %q, %v", r.resp, r.err)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Error("session did not close after its last call")
	}
}

// TestStreamClientLimits: a server that sends a stream message over the
// client's max_message, or more than the client's window without waiting
// for WINDOW_UPDATE, ends that stream with RESOURCE_EXHAUSTED and a CANCEL;
// the session keeps serving other calls.
func TestStreamClientLimits(t *testing.T) {
	tests := []struct {
		name   string
		frames func(id uint32) []byte
	}{
		{"message over max_message", func(id uint32) []byte {
			return data(id, strings.Repeat("m", 2<<10))
		}},
		{"past the window", func(id uint32) []byte {
			var b []byte
			for range defaultStreamWindow/1000 + 2 {
				b = append(b, data(id, strings.Repeat("w", 1000))...)
			}
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, p := startSessionWith(t, 100, kernel.Limits{HandshakeTimeout: 5 * time.Second, MaxMessage: 1 << 10})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cs, err := s.NewStream(ctx, &kernel.ClientCall{Method: "/t.S/Stream", Codec: stringCodec{}})
			if err != nil {
				t.Fatal(err)
			}
			h := p.expect(frameHeaders, 1)
			if h.flags&flagStream == 0 {
				t.Fatalf("stream HEADERS without the stream flag: flags %#x", h.flags)
			}
			// Nothing is read until the session has cancelled the stream,
			// so no WINDOW_UPDATE gives the server more room.
			p.write(tt.frames(1))
			p.expect(frameCancel, 1)
			var got string
			for {
				if err = cs.RecvMsg(&got); err != nil {
					break
				}
			}
			if status.CodeOf(err) != status.ResourceExhausted {
				t.Fatalf("RecvMsg: %v, want RESOURCE_EXHAUSTED", err)
			}
			p.write(trailers(1, status.Canceled))
			r := invoke(context.Background(), s, "after")
			p.expect(frameHeaders, 2)
			p.expect(frameData, 2)
			p.write(append(data(2, "ok"), trailers(2, status.OK)...))
			if r := wait(t, r); r.err != nil || r.resp != "ok" {
				t.Fatalf("call after the stream: %q, %v", r.resp, r.err)
			}
		})
	}
}

// TestStreamGoAway: after GOAWAY, a stream above the last stream the server
// will answer fails as refused (safe to open elsewhere), a stream below it
// runs to its end, and the session closes after it.
func TestStreamGoAway(t *testing.T) {
	s, p := startSession(t, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open := func(id uint32) kernel.ClientStream {
		t.Helper()
		cs, err := s.NewStream(ctx, &kernel.ClientCall{Method: "/t.S/Stream", Codec: stringCodec{}})
		if err != nil {
			t.Fatal(err)
		}
		p.expect(frameHeaders, id)
		return cs
	}
	below, above := open(1), open(2)
	ga := binary.AppendUvarint(nil, 1)
	ga = binary.AppendUvarint(ga, uint64(status.Unavailable))
	ga = appendString(ga, "draining")
	p.write(append(appendHeader(nil, len(ga), frameGoAway, 0, 0), ga...))
	var got string
	if err := above.RecvMsg(&got); !status.IsRefused(err) {
		t.Fatalf("stream above the go-away line: %v, want refused", err)
	}
	if _, err := s.NewStream(ctx, &kernel.ClientCall{Method: "/t.S/Stream", Codec: stringCodec{}}); !status.IsRefused(err) {
		t.Fatalf("NewStream after GOAWAY: %v, want refused", err)
	}
	msg := "still here"
	if err := below.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	if f := p.expect(frameData, 1); string(f.payload) != msg {
		t.Fatalf("DATA %q", f.payload)
	}
	if err := below.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if f := p.expect(frameData, 1); f.flags != flagEndStream|flagNoMessage || len(f.payload) != 0 {
		t.Fatalf("half-close frame: flags %#x, %d bytes", f.flags, len(f.payload))
	}
	p.write(append(data(1, "answer"), trailers(1, status.OK)...))
	if err := below.RecvMsg(&got); err != nil || got != "answer" {
		t.Fatalf("stream below the go-away line: %q, %v", got, err)
	}
	if err := below.RecvMsg(&got); err != io.EOF {
		t.Fatalf("end of the stream: %v, want io.EOF", err)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session did not close after its last stream")
	}
}

// breakableConn fails every write once broken is set; reads go on.
type breakableConn struct {
	net.Conn
	broken *atomic.Bool
}

func (c breakableConn) Write(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, errors.New("write: broken pipe (test)")
	}
	return c.Conn.Write(p)
}

// TestWriteFailureStopsAccepting: once a write to the connection fails, the
// session refuses new calls at once, while its reader still waits for what
// the server sent, so the client sends its next call elsewhere.
func TestWriteFailureStopsAccepting(t *testing.T) {
	var broken atomic.Bool
	s, _ := startSessionConn(t, 10, kernel.Limits{HandshakeTimeout: 5 * time.Second}, func(c net.Conn) net.Conn {
		return breakableConn{Conn: c, broken: &broken}
	})
	if !s.Accepting() {
		t.Fatal("a new session does not accept calls")
	}
	broken.Store(true)
	if err := s.w.write(func(b []byte) []byte { return appendHeader(b, 0, framePing, 0, 0) }); err == nil {
		t.Fatal("write on a broken connection succeeded")
	}
	if s.Accepting() {
		t.Fatal("the session still accepts calls after a write failed")
	}
}
