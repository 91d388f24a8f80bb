package transporttest

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel/status"
)

// rawTests drive the server with hand-written bytes through the transport,
// then check that it still serves a normal client.
var rawTests = []subtest{
	{"bad preface", testBadPreface},
	{"silent peer", testSilentPeer},
	{"truncated frame", testTruncatedFrame},
	{"oversized frames", testOversized},
	{"max concurrent streams", testMaxStreams},
	{"panicking handler", testPanic},
}

// serves checks that f answers a new client.
func serves(t *testing.T, f *fixture) {
	t.Helper()
	mustEcho(t, f.client(t, 1), "still serving")
}

// testBadPreface: a peer that does not speak Axon is disconnected.
func testBadPreface(t *testing.T, h *Harness) {
	f := h.serve(t, limits())
	cases := []struct{ name, preface string }{
		{"http/1", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"http/2", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{"tls", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"},
		{"wrong version", "\xa7AXON\r\n\x02"},
		{"zeros", strings.Repeat("\x00", 64)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := f.raw(t)
			r.write([]byte(tc.preface))
			r.expectClosed()
		})
	}
	serves(t, f)
}

// testSilentPeer: a peer that sends nothing, or only part of the preface,
// is disconnected within the handshake timeout (the protocol's or, for a
// transport that hides a silent peer from Accept, the transport's own).
func testSilentPeer(t *testing.T, h *Harness) {
	f := h.serve(t, limits())
	for _, tc := range []struct{ name, preface string }{{"silent", ""}, {"partial preface", "\xa7AX"}} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.raw(t)
			if tc.preface != "" {
				r.write([]byte(tc.preface))
			}
			r.expectClosed()
		})
	}
	serves(t, f)
}

// testTruncatedFrame: a peer that promises more bytes than it sends and
// then closes costs the server that connection only.
func testTruncatedFrame(t *testing.T, h *Harness) {
	f := h.serve(t, limits())
	hdrs := headers(0, mEcho, h.Codec.Name())
	cases := []struct {
		name  string
		bytes []byte
	}{
		{"frame header", frameHeader(20, ftHeaders, 0, 1)[:6]},
		{"HEADERS payload", append(frameHeader(200, ftHeaders, 0, 1), 1, 2, 3)},
		{"DATA payload", append(appendFrame(nil, ftHeaders, 0, 1, hdrs), append(frameHeader(100, ftData, flEndStream, 1), 1, 2)...)},
		{"malformed HEADERS", appendFrame(nil, ftHeaders, 0, 1, []byte{0xff})},
		{"stream 0", appendFrame(appendFrame(nil, ftHeaders, 0, 0, hdrs), ftData, flEndStream, 0, nil)},
		{"unknown frame type", append(frameHeader(1000, 0x7e, 0, 0), 1, 2, 3)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := f.raw(t)
			r.handshake()
			r.write(tc.bytes)
			r.Close()
			serves(t, f)
		})
	}
}

// testOversized: a message over max_message, or frames claiming far more
// than the limits, fail their call with RESOURCE_EXHAUSTED (not refused),
// before the server reads what they claim.
func testOversized(t *testing.T, h *Harness) {
	lim := limits()
	f := h.serve(t, lim)
	hdrs := headers(0, mEcho, h.Codec.Name())
	const claimed = 1 << 30
	t.Run("message over the limit", func(t *testing.T) {
		r := f.raw(t)
		if s := r.handshake(); s[settingMaxMessage] != uint64(lim.MaxMessage) {
			t.Errorf("server settings %v do not announce max_message %d", s, lim.MaxMessage)
		}
		r.write(r.call(1, mEcho, wrapperspb.Bytes(bytes.Repeat([]byte{'o'}, int(lim.MaxMessage)))))
		if res := r.results(1, nil)[1]; res.code != status.ResourceExhausted || res.refused {
			t.Errorf("stream 1: %v %q refused=%v, want RESOURCE_EXHAUSTED", res.code, res.msg, res.refused)
		}
		f.svc.gate("next").open()
		r.write(r.block(3, "next"))
		if res := r.results(1, nil)[3]; res.code != status.OK || r.text(res) != "next" {
			t.Errorf("stream 3 on the same connection: %v %q", res.code, res.msg)
		}
	})
	for _, tc := range []struct {
		name  string
		bytes []byte
	}{
		{"DATA claiming 1GiB", append(appendFrame(nil, ftHeaders, 0, 1, hdrs), append(frameHeader(claimed, ftData, flEndStream, 1), "a few bytes"...)...)},
		{"HEADERS claiming 1GiB", append(frameHeader(claimed, ftHeaders, 0, 1), hdrs...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.raw(t)
			r.handshake()
			r.write(tc.bytes)
			if res := r.results(1, nil)[1]; res.code != status.ResourceExhausted || res.refused {
				t.Errorf("stream 1: %v %q refused=%v, want RESOURCE_EXHAUSTED", res.code, res.msg, res.refused)
			}
			r.Close()
		})
	}
	serves(t, f)
}

// testMaxStreams: calls beyond max_concurrent_streams on one connection are
// refused, retryably, until a slot frees; the kernel client waits for a
// slot instead of being refused.
func testMaxStreams(t *testing.T, h *Harness) {
	lim := limits()
	lim.MaxConcurrentStreams = 4
	t.Run("raw", func(t *testing.T) {
		f := h.serve(t, lim)
		r := f.raw(t)
		if s := r.handshake(); s[settingMaxStreams] != 4 {
			t.Errorf("server settings %v do not announce 4 streams", s)
		}
		var b []byte
		for id := uint32(1); id <= 5; id++ {
			b = append(b, r.block(id, fmt.Sprint("stream ", id))...)
		}
		r.write(b)
		if res, ok := r.results(1, nil)[5]; !ok || res.code != status.Unavailable || !res.refused {
			t.Fatalf("first answer: %+v for stream 5 (present %v), want UNAVAILABLE refused", res, ok)
		}
		for id := 1; id <= 4; id++ {
			recv(t, f.svc.gate(fmt.Sprint("stream ", id)).started, "the first four handlers to start")
		}
		r.write(r.block(7, "stream 7"))
		if res := r.results(1, nil)[7]; !res.refused {
			t.Errorf("stream 7 with four running: %v %q, want refused", res.code, res.msg)
		}
		r.write(appendFrame(nil, ftCancel, 0, 1, []byte{byte(status.Canceled)}))
		if res := r.results(1, nil)[1]; res.code != status.Canceled {
			t.Errorf("cancelled stream 1: %v %q, want CANCELED", res.code, res.msg)
		}
		r.write(r.block(9, "stream 9"))
		f.svc.gate("stream 9").open()
		if res := r.results(1, nil)[9]; res.code != status.OK || r.text(res) != "stream 9" {
			t.Errorf("stream 9 once a slot freed: %v %q", res.code, res.msg)
		}
	})
	t.Run("client waits for a slot", func(t *testing.T) {
		f := h.serve(t, lim)
		c := f.client(t, 1)
		const n = 12
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := <-block(c, ctx(t), fmt.Sprint("queued ", i)); err != nil {
					errs <- err
				}
			}()
		}
		// Release the handlers one by one as they start.
		for range n {
			f.svc.gate(recv(t, f.svc.started, "a queued call's handler to start")).open()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("a call failed instead of waiting for a stream: %v (refused %v)", err, status.IsRefused(err))
		}
		if m := f.svc.maxInflight.Load(); m > 4 {
			t.Errorf("%d handlers ran at once on one connection; the limit is 4", m)
		}
	})
}

// testPanic: a panicking handler fails its call with INTERNAL; the
// connection and the server go on.
func testPanic(t *testing.T, h *Harness) {
	f := h.serve(t, limits())
	r := f.raw(t)
	r.handshake()
	r.write(append(r.call(1, mPanic, wrapperspb.String("")), r.call(3, mBlock, wrapperspb.String("after panic"))...))
	f.svc.gate("after panic").open()
	res := r.results(2, nil)
	if res[1].code != status.Internal {
		t.Errorf("panic: %v %q, want INTERNAL", res[1].code, res[1].msg)
	}
	if res[3].code != status.OK || r.text(res[3]) != "after panic" {
		t.Errorf("the call after the panic: %v %q", res[3].code, res[3].msg)
	}
	c := f.client(t, 1)
	for range 3 {
		var resp wrapperspb.StringValue
		if err := c.Invoke(ctx(t), mPanic, wrapperspb.String(""), &resp); status.CodeOf(err) != status.Internal {
			t.Errorf("client: %v, want INTERNAL", err)
		}
	}
	serves(t, f)
}
