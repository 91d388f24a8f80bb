package e2e_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// Every test here drives a server with a raw-byte peer and then checks that
// the server still serves a normal client.

// serves asserts that srv answers a new client.
func serves(t *testing.T, srv *server) {
	t.Helper()
	if got := mustSay(t, newClient(t, srv.addr(), 1), mEcho, "alive"); got != "alive" {
		t.Fatalf("echo answered %q", got)
	}
}

// TestHugeLengthNotAllocated: frames claiming far more than max_message or
// max_metadata are answered with RESOURCE_EXHAUSTED without the server
// allocating what they claim.
func TestHugeLengthNotAllocated(t *testing.T) {
	srv := startServer(t, srvConf{})
	const claimed = 1 << 30
	cases := []struct {
		name  string
		write func(r *rawConn)
	}{
		{"DATA", func(r *rawConn) {
			b := appendFrame(nil, ftHeaders, 0, 1, headersPayload(0, mEcho, "proto"))
			b = append(b, frameHeader(claimed, ftData, flEndStream, 1)...)
			r.write(append(b, "only a few bytes"...))
		}},
		{"HEADERS", func(r *rawConn) {
			r.write(append(frameHeader(claimed, ftHeaders, 0, 1), headersPayload(0, mEcho, "proto")...))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, srv.addr())
			r.handshake()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			tc.write(r)
			res := r.readResults(1)[1]
			runtime.ReadMemStats(&after)
			if res.code != status.ResourceExhausted {
				t.Errorf("trailers %v %q, want RESOURCE_EXHAUSTED", res.code, res.msg)
			}
			if res.refused {
				t.Error("RESOURCE_EXHAUSTED marked refused")
			}
			// Everything else the process did meanwhile is well under this.
			if d := after.TotalAlloc - before.TotalAlloc; d > claimed/16 {
				t.Errorf("the process allocated %d bytes while a peer claimed %d", d, claimed)
			}
			r.Close()
			serves(t, srv)
		})
	}
}

// TestBadPreface: a peer that does not speak Axon is disconnected.
func TestBadPreface(t *testing.T) {
	srv := startServer(t, srvConf{})
	cases := map[string]string{
		"http/1":        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"http/2":        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"tls":           "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
		"wrong version": "\xa7AXON\r\n\x02",
		"garbage":       strings.Repeat("\x00", 64),
	}
	for name, pre := range cases {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, srv.addr())
			r.write([]byte(pre))
			r.expectClosed()
		})
	}
	serves(t, srv)
}

// TestTruncatedFrame: a peer that promises more bytes than it sends and
// then closes costs the server that connection only.
func TestTruncatedFrame(t *testing.T) {
	srv := startServer(t, srvConf{})
	cases := map[string][]byte{
		"header":       frameHeader(20, ftHeaders, 0, 1)[:6],
		"HEADERS":      append(frameHeader(200, ftHeaders, 0, 1), 1, 2, 3),
		"DATA":         append(appendFrame(nil, ftHeaders, 0, 1, headersPayload(0, mEcho, "proto")), append(frameHeader(100, ftData, flEndStream, 1), 1, 2)...),
		"malformed":    appendFrame(nil, ftHeaders, 0, 1, []byte{0xff}),
		"stream 0":     callFrames(0, 0, mEcho, "proto", "x"),
		"unknown type": append(frameHeader(1000, 0x7e, 0, 0), 1, 2, 3),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, srv.addr())
			r.handshake()
			r.write(b)
			r.Close()
			serves(t, srv)
		})
	}
}

// TestMaxConcurrentStreams: calls beyond max_concurrent_streams on one
// connection are refused, retryably; the kernel client queues instead.
func TestMaxConcurrentStreams(t *testing.T) {
	srv := startServer(t, srvConf{Limits: "{max_concurrent_streams: 4}"})

	t.Run("raw", func(t *testing.T) {
		r := dialRaw(t, srv.addr())
		if s := r.handshake(); s[settingMaxStreams] != 4 {
			t.Errorf("server settings %v do not announce 4 streams", s)
		}
		var b []byte
		for id := uint32(1); id <= 5; id++ {
			b = append(b, callFrames(id, 0, mSleep, "proto", "10s")...)
		}
		r.write(b)
		res := r.readResults(1)
		got, ok := res[5]
		if !ok {
			t.Fatalf("first result is for stream(s) %v, want 5", res)
		}
		if got.code != status.Unavailable || !got.refused {
			t.Errorf("stream 5: %v %q refused=%v, want UNAVAILABLE refused", got.code, got.msg, got.refused)
		}
		// The first four are running; one more is refused too.
		r.write(callFrames(7, 0, mSleep, "proto", "10s"))
		if got := r.readResults(1)[7]; !got.refused {
			t.Errorf("stream 7: %v %q, want refused", got.code, got.msg)
		}
		// Cancel one: its slot frees once its handler ends.
		r.writeFrame(ftCancel, 0, 1, []byte{byte(status.Canceled)})
		if got := r.readResults(1)[1]; got.code != status.Canceled {
			t.Errorf("cancelled stream 1: %v %q", got.code, got.msg)
		}
		r.write(callFrames(9, 0, mEcho, "proto", "fits"))
		if got := r.readResults(1)[9]; got.code != status.OK || got.text != "fits" {
			t.Errorf("stream 9 after a slot freed: %v %q %q", got.code, got.msg, got.text)
		}
		r.Close()
		waitFor(t, "handlers to end with the connection", func() bool { return srv.svc.inflight.Load() == 0 })
	})

	t.Run("client queues", func(t *testing.T) {
		srv.svc.maxInflight.Store(0)
		c := newClient(t, srv.addr(), 1)
		const n = 12
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				if _, err := say(ctx, c, mSleep, fmt.Sprintf("50ms q%d", i)); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("call failed instead of waiting for a stream: %v (refused %v)", err, status.IsRefused(err))
		}
		if m := srv.svc.maxInflight.Load(); m > 4 {
			t.Errorf("%d handlers ran at once on one connection, limit 4", m)
		}
	})

	// Callers that give up keep their stream counted until the server's
	// handler ends; the client must not overrun the limit because of them.
	t.Run("client queues behind cancelled calls", func(t *testing.T) {
		c := newClient(t, srv.addr(), 1)
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				if _, err := say(ctx, c, mStub, "300ms"); codeOf(err) != status.DeadlineExceeded {
					t.Errorf("stubborn call: %v, want DEADLINE_EXCEEDED", err)
				}
			}()
		}
		wg.Wait()
		for i := range 8 {
			mustSay(t, c, mEcho, fmt.Sprintf("after %d", i))
		}
	})
}

// TestMaxMetadata: a header block over max_metadata fails its call with
// RESOURCE_EXHAUSTED; the connection goes on.
func TestMaxMetadata(t *testing.T) {
	srv := startServer(t, srvConf{Limits: "{max_metadata: 1KiB}"})
	big := strings.Repeat("v", 2048)

	t.Run("raw", func(t *testing.T) {
		r := dialRaw(t, srv.addr())
		r.handshake()
		r.write(callFrames(1, 0, mEcho, "proto", "x", "x-big", big))
		if got := r.readResults(1)[1]; got.code != status.ResourceExhausted {
			t.Errorf("stream 1: %v %q, want RESOURCE_EXHAUSTED", got.code, got.msg)
		}
		r.write(callFrames(3, 0, mEcho, "proto", "small", "x-small", "v"))
		if got := r.readResults(1)[3]; got.code != status.OK || got.text != "small" {
			t.Errorf("stream 3 on the same connection: %v %q %q", got.code, got.msg, got.text)
		}
	})

	t.Run("client", func(t *testing.T) {
		c := newClient(t, srv.addr(), 1)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_, err := say(metadata.AppendToOutgoingContext(ctx, "x-big", big), c, mEcho, "x")
		if codeOf(err) != status.ResourceExhausted {
			t.Errorf("err = %v, want RESOURCE_EXHAUSTED", err)
		}
		mustSay(t, c, mEcho, "fine")
	})
}

// TestMaxMessage: a request over max_message fails with RESOURCE_EXHAUSTED;
// the client checks the server's announced limit before sending.
func TestMaxMessage(t *testing.T) {
	srv := startServer(t, srvConf{Limits: "{max_message: 4KiB}"})
	big := strings.Repeat("m", 8<<10)
	t.Run("raw", func(t *testing.T) {
		r := dialRaw(t, srv.addr())
		if s := r.handshake(); s[settingMaxMessage] != 4<<10 {
			t.Errorf("settings %v do not announce max_message 4096", s)
		}
		r.write(callFrames(1, 0, mEcho, "proto", big))
		if got := r.readResults(1)[1]; got.code != status.ResourceExhausted {
			t.Errorf("stream 1: %v %q, want RESOURCE_EXHAUSTED", got.code, got.msg)
		}
		r.write(callFrames(3, 0, mEcho, "proto", "small"))
		if got := r.readResults(1)[3]; got.code != status.OK {
			t.Errorf("stream 3 on the same connection: %v %q", got.code, got.msg)
		}
	})
	t.Run("client", func(t *testing.T) {
		c := newClient(t, srv.addr(), 1)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if _, err := say(ctx, c, mEcho, big); codeOf(err) != status.ResourceExhausted {
			t.Errorf("err = %v, want RESOURCE_EXHAUSTED", err)
		}
		mustSay(t, c, mEcho, "fine")
	})
}

// TestPanicIsInternal: a panicking handler fails its call with INTERNAL and
// the server, and the connection, go on.
func TestPanicIsInternal(t *testing.T) {
	srv := startServer(t, srvConf{})
	r := dialRaw(t, srv.addr())
	r.handshake()
	r.write(append(callFrames(1, 0, mPanic, "proto", ""), callFrames(3, 0, mEcho, "proto", "next")...))
	res := r.readResults(2)
	if res[1].code != status.Internal {
		t.Errorf("panic: %v %q, want INTERNAL", res[1].code, res[1].msg)
	}
	if res[3].code != status.OK || res[3].text != "next" {
		t.Errorf("call after the panic: %v %q", res[3].code, res[3].msg)
	}
	c := newClient(t, srv.addr(), 1)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		_, err := say(ctx, c, mPanic, "")
		cancel()
		if codeOf(err) != status.Internal {
			t.Errorf("err = %v, want INTERNAL", err)
		}
	}
	serves(t, srv)
}

// TestHandshakeTimeout: a peer that never sends its preface, or only part
// of it, is disconnected after handshake_timeout.
func TestHandshakeTimeout(t *testing.T) {
	srv := startServer(t, srvConf{Limits: "{handshake_timeout: 200ms}"})
	for name, pre := range map[string]string{"silent": "", "partial": "\xa7AX"} {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, srv.addr())
			if pre != "" {
				r.write([]byte(pre))
			}
			r.expectClosed()
		})
	}
	serves(t, srv)
}

// TestUnimplemented: an unknown method or codec is UNIMPLEMENTED, naming
// what is accepted.
func TestUnimplemented(t *testing.T) {
	srv := startServer(t, srvConf{})
	t.Run("raw", func(t *testing.T) {
		r := dialRaw(t, srv.addr())
		r.handshake()
		r.write(append(callFrames(1, 0, "/"+svcName+"/Missing", "proto", "x"), callFrames(3, 0, mEcho, "msgpack", "x")...))
		res := r.readResults(2)
		if res[1].code != status.Unimplemented || !strings.Contains(res[1].msg, "Missing") {
			t.Errorf("unknown method: %v %q", res[1].code, res[1].msg)
		}
		if res[3].code != status.Unimplemented || !strings.Contains(res[3].msg, "msgpack") || !strings.Contains(res[3].msg, "accepted: proto") {
			t.Errorf("unknown codec: %v %q", res[3].code, res[3].msg)
		}
		// An empty codec name selects the server's default.
		r.write(callFrames(5, 0, mEcho, "", "default codec"))
		if got := r.readResults(1)[5]; got.code != status.OK || got.text != "default codec" {
			t.Errorf("default codec: %v %q %q", got.code, got.msg, got.text)
		}
	})
	t.Run("client", func(t *testing.T) {
		c, err := kernel.NewClient(kernel.ClientOptions{
			Target:     srv.addr(),
			Transports: map[string]kernel.Transport{"tcp": tcp.New(tcp.DefaultConfig())},
			Protocol:   native.New(native.DefaultConfig()),
			Codec:      jsonCodec{protocodec.Codec{}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_, err = say(ctx, c, mEcho, "x")
		if codeOf(err) != status.Unimplemented || !strings.Contains(err.Error(), "accepted: proto") {
			t.Errorf("err = %v, want UNIMPLEMENTED naming the accepted codecs", err)
		}
	})
	serves(t, srv)
}
