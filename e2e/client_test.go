package e2e_test

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/kernel/transporttest"
)

// TestClientReconnects: the client replaces connections the server dropped,
// abruptly or by restarting, and later calls succeed.
func TestClientReconnects(t *testing.T) {
	t.Run("abrupt drop", func(t *testing.T) {
		srv := startServer(t, srvConf{Transport: "probe"})
		c := newClient(t, "tcp://"+hostPort(srv.addr()), 2)
		for range 4 {
			mustSay(t, c, mEcho, "before")
		}
		for round := range 3 {
			if n := srv.probe.dropAll(); n == 0 {
				t.Fatalf("round %d: no connection to drop", round)
			}
			// A call racing the drop may fail with UNAVAILABLE (the client
			// cannot know whether the server got it); the client must then
			// reconnect, so calls soon succeed again.
			failures := 0
			for {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				_, err := say(ctx, c, mEcho, "after drop")
				cancel()
				if err == nil {
					break
				}
				if codeOf(err) != status.Unavailable {
					t.Fatalf("round %d: call after drop: %v, want UNAVAILABLE or success", round, err)
				}
				if failures++; failures > 4 {
					t.Fatalf("round %d: client did not reconnect: %v", round, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			for range 4 {
				mustSay(t, c, mEcho, "reconnected")
			}
		}
	})

	t.Run("server restart on the same port", func(t *testing.T) {
		addr := freePort(t)
		srv := startServer(t, srvConf{Addr: addr})
		c := newClient(t, "tcp://"+addr, 2)
		for range 4 {
			mustSay(t, c, mEcho, "before")
		}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := srv.rt.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		// The server said go away before closing: the client knows its
		// connections are gone and no call after the restart fails.
		startServer(t, srvConf{Addr: addr})
		for range 8 {
			mustSay(t, c, mEcho, "after restart")
		}
	})
}

// fakeServer is a hand-written Axon server on loopback whose behaviour per
// connection a test chooses.
type fakeServer struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
}

// startFake serves each accepted connection with serve(n, conn), n counting
// connections from 1.
func startFake(t *testing.T, serve func(n int32, c net.Conn)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln}
	var mu sync.Mutex
	var conns []net.Conn
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(testTimeout))
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			n := f.conns.Add(1)
			f.wg.Add(1)
			go func() { defer f.wg.Done(); serve(n, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeServer) addr() string { return "tcp://" + f.ln.Addr().String() }

// fakeHandshake reads the client's preface and settings and sends the
// server's.
func fakeHandshake(c net.Conn) (*rawConn, bool) {
	r := &rawConn{Peer: transporttest.NewPeer(nil, c)} // no t: only reads are used
	pre := make([]byte, len(axonPreface))
	if err := r.ReadFull(pre); err != nil || string(pre) != string(axonPreface) {
		return nil, false
	}
	if f, err := r.readFrame(); err != nil || f.typ != ftSettings {
		return nil, false
	}
	settings := binary.AppendUvarint(nil, settingMaxStreams)
	settings = binary.AppendUvarint(settings, 100)
	if _, err := c.Write(appendFrame(append([]byte(nil), axonPreface...), ftSettings, 0, 0, settings)); err != nil {
		return nil, false
	}
	return r, true
}

// readCall reads one call's HEADERS and DATA and returns its stream id.
func readCall(r *rawConn) (uint32, bool) {
	for {
		f, err := r.readFrame()
		if err != nil {
			return 0, false
		}
		if f.typ == ftData && f.flags&flEndStream != 0 {
			return f.stream, true
		}
	}
}

func trailersFrame(stream uint32, flags byte, code status.Code, msg string) []byte {
	p := binary.AppendUvarint(nil, uint64(code))
	p = appendStr(p, msg)
	p = binary.AppendUvarint(p, 0)
	return appendFrame(nil, ftTrailers, flags, stream, p)
}

// echoResponse answers a call with "ok" and status OK.
func echoResponse(stream uint32) []byte {
	// SayResponse{Text: "ok"}: field 1, wire type 2, length 2.
	b := appendFrame(nil, ftData, 0, stream, []byte{0x0a, 2, 'o', 'k'})
	return append(b, trailersFrame(stream, 0, status.OK, "")...)
}

// TestClientRetriesRefusedCalls: a call the server refused without running
// it (by GOAWAY or a REFUSED trailer) is sent again on another connection
// and the caller sees no failure. A call that may have run is not retried.
func TestClientRetriesRefusedCalls(t *testing.T) {
	goAway := func(last uint32) []byte {
		p := binary.AppendUvarint(nil, uint64(last))
		p = binary.AppendUvarint(p, uint64(status.Unavailable))
		p = appendStr(p, "draining")
		return appendFrame(nil, ftGoAway, 0, 0, p)
	}
	cases := []struct {
		name   string
		refuse func(stream uint32) []byte // the first connection's answer to its first call
		want   status.Code
		conns  int32 // how many connections the client must have used; 0: any
	}{
		{"goaway", func(uint32) []byte { return goAway(0) }, status.OK, 2},
		// A refused call may be resent on the same connection.
		{"refused trailers", func(s uint32) []byte { return trailersFrame(s, flRefused, status.Unavailable, "busy") }, status.OK, 0},
		{"goaway then close", func(uint32) []byte { return goAway(0) }, status.OK, 2},
		{"unavailable, not refused", func(s uint32) []byte { return trailersFrame(s, 0, status.Unavailable, "maybe ran") }, status.Unavailable, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, func(n int32, c net.Conn) {
				defer c.Close()
				r, ok := fakeHandshake(c)
				if !ok {
					return
				}
				for i := 0; ; i++ {
					id, ok := readCall(r)
					if !ok {
						return
					}
					if n == 1 && i == 0 {
						c.Write(tc.refuse(id))
						if tc.name == "goaway then close" {
							return
						}
						continue
					}
					c.Write(echoResponse(id))
				}
			})
			c := newClient(t, f.addr(), 1)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			got, err := say(ctx, c, mEcho, "x")
			if codeOf(err) != tc.want {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && got != "ok" {
				t.Errorf("response %q", got)
			}
			if n := f.conns.Load(); tc.conns != 0 && n != tc.conns {
				t.Errorf("client opened %d connections", n)
			}
		})
	}
}

// TestClientDeadlineUnreachable: a caller with a deadline gets its answer by
// the deadline however the endpoint fails to answer.
func TestClientDeadlineUnreachable(t *testing.T) {
	closed := freePort(t)
	blackhole := startFake(t, func(_ int32, c net.Conn) {
		// Accept, read whatever comes, never answer.
		var b [512]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	})
	mute := startFake(t, func(_ int32, c net.Conn) {
		// Complete the handshake, then never answer a call.
		r, ok := fakeHandshake(c)
		if !ok {
			return
		}
		for {
			if _, err := r.readFrame(); err != nil {
				return
			}
		}
	})
	cases := []struct {
		name, target string
		want         []status.Code
	}{
		{"closed port", "tcp://" + closed, []status.Code{status.Unavailable, status.DeadlineExceeded}},
		{"no handshake", blackhole.addr(), []status.Code{status.DeadlineExceeded}},
		{"no answer", mute.addr(), []status.Code{status.DeadlineExceeded}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, tc.target, 1)
			// Several callers at once share the connection slot being dialed;
			// none may be held past its own deadline by another's dial.
			deadlines := []time.Duration{2500 * time.Millisecond, 300 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond}
			var wg sync.WaitGroup
			type res struct {
				took, dl time.Duration
				err      error
			}
			results := make(chan res, len(deadlines))
			for i, dl := range deadlines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(i) * 5 * time.Millisecond) // the long one dials first
					ctx, cancel := context.WithTimeout(context.Background(), dl)
					defer cancel()
					start := time.Now()
					_, err := say(ctx, c, mEcho, "x")
					results <- res{time.Since(start), dl, err}
				}()
			}
			wg.Wait()
			close(results)
			for r := range results {
				if r.took > r.dl+1500*time.Millisecond {
					t.Errorf("caller with a %v deadline returned after %v", r.dl, r.took)
				}
				ok := false
				for _, w := range tc.want {
					ok = ok || codeOf(r.err) == w
				}
				if !ok {
					t.Errorf("caller with a %v deadline: %v, want one of %v", r.dl, r.err, tc.want)
				}
			}
		})
	}
}

// TestClientCloseFailsCalls: closing the client fails calls in flight with
// UNAVAILABLE, and later calls at once.
func TestClientCloseFailsCalls(t *testing.T) {
	srv := startServer(t, srvConf{})
	c := newClient(t, srv.addr(), 2)
	started, _ := srv.svc.watch("closing")
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_, err := say(ctx, c, mWatch, "closing")
		errc <- err
	}()
	recv(t, started, "handler start")
	c.Close()
	if err := recv(t, errc, "call in flight"); codeOf(err) != status.Unavailable {
		t.Errorf("call in flight: %v, want UNAVAILABLE", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := say(ctx, c, mEcho, "x"); codeOf(err) != status.Unavailable {
		t.Errorf("call after Close: %v, want UNAVAILABLE", err)
	}
	serves(t, srv)
}
