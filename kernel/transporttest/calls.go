package transporttest

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
)

// callTests run the native protocol over the transport through
// kernel.Client.
var callTests = []subtest{
	{"concurrent", testConcurrent},
	{"message size", testMessageSize},
	{"deadline", testDeadline},
	{"cancel", testCancel},
	{"server killed mid-call", testServerKilled},
	{"drain", testDrain},
}

// echo calls Echo with payload and checks the answer.
func echo(t testing.TB, c *kernel.Client, payload string) error {
	var resp wrapperspb.BytesValue
	if err := c.Invoke(ctx(t), mEcho, wrapperspb.Bytes([]byte(payload)), &resp); err != nil {
		return err
	}
	if string(resp.GetValue()) != payload {
		return fmt.Errorf("echo of %s answered %s", short(payload), short(string(resp.GetValue())))
	}
	return nil
}

func mustEcho(t testing.TB, c *kernel.Client, payload string) {
	t.Helper()
	if err := echo(t, c, payload); err != nil {
		t.Fatalf("echo: %v", err)
	}
}

// block calls Block with token in a goroutine and returns its error.
func block(c *kernel.Client, cctx context.Context, token string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		var resp wrapperspb.StringValue
		err := c.Invoke(cctx, mBlock, wrapperspb.String(token), &resp)
		if err == nil && resp.GetValue() != token {
			err = fmt.Errorf("Block(%q) answered %q", token, resp.GetValue())
		}
		errc <- err
	}()
	return errc
}

// testConcurrent: 100 goroutines share two connections; every answer
// reaches its own caller.
func testConcurrent(t *testing.T, h *Harness) {
	f := h.serve(t, limits())
	c := f.client(t, 2)
	const callers, calls = 100, 10
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range calls {
				payload := fmt.Sprintf("caller %d call %d %s", i, j, strings.Repeat("p", (i*calls+j)*7%4096))
				if err := echo(t, c, payload); err != nil {
					errs <- fmt.Errorf("caller %d call %d: %w", i, j, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testMessageSize: messages just under the limits pass; one byte over fails
// its call with RESOURCE_EXHAUSTED and the connection goes on.
func testMessageSize(t *testing.T, h *Harness) {
	lim := limits()
	f := h.serve(t, lim)
	c := f.client(t, 1)
	max := int(lim.MaxMessage)
	// A BytesValue of n bytes encodes to n plus at most 4 bytes here.
	cases := []struct {
		name   string
		method string
		req    any
		size   int // expected response size when the call succeeds
		code   status.Code
	}{
		{"request under the server's limit", mEcho, wrapperspb.Bytes(bytes.Repeat([]byte{'q'}, max-16)), max - 16, status.OK},
		{"request over the server's limit", mEcho, wrapperspb.Bytes(bytes.Repeat([]byte{'q'}, max+1)), 0, status.ResourceExhausted},
		{"response under the client's limit", mGrow, wrapperspb.UInt32(uint32(max - 16)), max - 16, status.OK},
		{"response over the client's limit", mGrow, wrapperspb.UInt32(uint32(max + 1)), 0, status.ResourceExhausted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var resp wrapperspb.BytesValue
			err := c.Invoke(ctx(t), tc.method, tc.req, &resp)
			if got := status.CodeOf(err); got != tc.code {
				t.Fatalf("got %v (%v), want %v", got, err, tc.code)
			}
			if tc.code == status.OK && len(resp.GetValue()) != tc.size {
				t.Errorf("response of %d bytes, want %d", len(resp.GetValue()), tc.size)
			}
			mustEcho(t, c, "the connection goes on")
		})
	}
}

// testDeadline: a call past its deadline fails with DEADLINE_EXCEEDED, and
// the handler ran under a deadline no later than the caller's, whose
// passing ended its context.
func testDeadline(t *testing.T, h *Harness) {
	f := h.serve(t, limits())
	c := f.client(t, 1)
	mustEcho(t, c, "warm up") // the deadline is for the call, not the dial
	g := f.svc.gate("deadline")
	const d = 300 * time.Millisecond
	cctx, cancel := context.WithTimeout(ctx(t), d)
	defer cancel()
	err := recv(t, block(c, cctx, "deadline"), "the call with a deadline")
	if status.CodeOf(err) != status.DeadlineExceeded {
		t.Errorf("call: %v, want DEADLINE_EXCEEDED", err)
	}
	ob := recv(t, g.observed, "the handler to end (did it run?)")
	if !ob.hasDeadline {
		t.Error("the handler's context had no deadline")
	} else if ob.left > d {
		t.Errorf("the handler had %v left, more than the caller's whole %v", ob.left, d)
	}
	if ob.err == nil {
		t.Error("the handler's context never ended")
	}
	mustEcho(t, c, "after the deadline")
}

// testCancel: a caller that cancels gets CANCELED, and the handler's
// context is cancelled.
func testCancel(t *testing.T, h *Harness) {
	f := h.serve(t, limits())
	c := f.client(t, 1)
	g := f.svc.gate("cancel")
	cctx, cancel := context.WithCancel(ctx(t))
	errc := block(c, cctx, "cancel")
	recv(t, g.started, "the handler to start")
	cancel()
	if err := recv(t, errc, "the cancelled call"); status.CodeOf(err) != status.Canceled {
		t.Errorf("call: %v, want CANCELED", err)
	}
	if ob := recv(t, g.observed, "the handler to see the cancellation"); ob.err != context.Canceled {
		t.Errorf("the handler's context ended with %v, want context.Canceled", ob.err)
	}
	mustEcho(t, c, "after the cancellation")
}

// testServerKilled: when the server's listener and connections close
// abruptly, calls in flight fail with UNAVAILABLE instead of hanging,
// their handlers' contexts end, and new calls fail with UNAVAILABLE.
func testServerKilled(t *testing.T, h *Harness) {
	f := h.serve(t, limits())
	c := f.client(t, 2)
	mustEcho(t, c, "warm up")
	var errcs []<-chan error
	var gates []*gate
	for i := range 4 {
		token := fmt.Sprintf("killed %d", i)
		gates = append(gates, f.svc.gate(token))
		errcs = append(errcs, block(c, ctx(t), token))
	}
	for _, g := range gates {
		recv(t, g.started, "the handlers to start")
	}
	f.kill()
	for i, errc := range errcs {
		if err := recv(t, errc, "a call whose server went away"); status.CodeOf(err) != status.Unavailable {
			t.Errorf("call %d: %v, want UNAVAILABLE", i, err)
		}
	}
	for i, g := range gates {
		if ob := recv(t, g.observed, "a handler whose connection closed to end"); ob.err == nil {
			t.Errorf("handler %d returned as if released", i)
		}
	}
	if err := echo(t, c, "nobody there"); status.CodeOf(err) != status.Unavailable {
		t.Errorf("call after the server went away: %v, want UNAVAILABLE", err)
	}
}

// goAwayLast returns the last stream id a GOAWAY frame names.
func goAwayLast(t testing.TB, f frame) int64 {
	t.Helper()
	v, _, err := uvarint(f.payload)
	if err != nil {
		t.Fatalf("goaway: %v", err)
	}
	return int64(v)
}

// testDrain: ServerConn.Shutdown with calls in flight tells peers to go
// away in two steps, then refuses new calls (a raw peer sees a GOAWAY that
// refuses nothing and a PING, then, once it answered, the final GOAWAY and
// a refusal; the kernel client retries on a new connection, served by the
// next server), waits for the calls in flight to complete, and only then
// returns and closes the connections.
func testDrain(t *testing.T, h *Harness) {
	f := h.serve(t, limits())
	c := f.client(t, 2)
	mustEcho(t, c, "warm up")

	r := f.raw(t)
	r.handshake()
	rawGate := f.svc.gate("raw")
	r.write(r.block(1, "raw"))
	var errcs []<-chan error
	gates := []*gate{rawGate}
	for i := range 8 {
		token := fmt.Sprintf("drain %d", i)
		gates = append(gates, f.svc.gate(token))
		errcs = append(errcs, block(c, ctx(t), token))
	}
	for _, g := range gates {
		recv(t, g.started, "the handlers to start")
	}

	old := f.swap()
	shut := make(chan error, 1)
	sctx := ctx(t)
	go func() { shut <- old.Shutdown(sctx) }()

	// Going away takes two steps, as HTTP/2's graceful shutdown does. First
	// a GOAWAY that refuses nothing, with a PING: a stream the peer opens
	// before it answers the PING was perhaps sent before it read the
	// GOAWAY, and is served.
	var first int64 = -1
	var ping []byte
	for first < 0 || ping == nil {
		f, err := r.readFrame()
		if err != nil {
			t.Fatalf("waiting for the first GOAWAY and its PING: %v", err)
		}
		switch {
		case f.typ == ftGoAway && first < 0:
			first = goAwayLast(t, f)
		case f.typ == ftPing && f.flags&flAck == 0:
			ping = f.payload
		}
	}
	if first != math.MaxUint32 {
		t.Errorf("the first GOAWAY names stream %d as the last, want %d (none refused)", first, uint32(math.MaxUint32))
	}
	late := f.svc.gate("late")
	gates = append(gates, late)
	r.write(r.block(3, "late"))
	recv(t, late.started, "a stream opened before the PING's answer to be served")

	// Then, once the peer answered, the final GOAWAY names the last stream
	// served, and a stream opened now is refused, retryably.
	r.write(appendFrame(nil, ftPing, flAck, 0, ping))
	var last int64 = -1
	for last < 0 {
		f, err := r.readFrame()
		if err != nil {
			t.Fatalf("waiting for the final GOAWAY: %v", err)
		}
		if f.typ == ftGoAway {
			last = goAwayLast(t, f)
		}
	}
	if last != 3 {
		t.Errorf("the final GOAWAY names stream %d as the last, want 3", last)
	}
	r.write(r.block(5, "later"))
	if res := r.results(1, nil)[5]; res.code != status.Unavailable || !res.refused {
		t.Errorf("a stream opened after the final GOAWAY: %v %q refused=%v, want UNAVAILABLE refused", res.code, res.msg, res.refused)
	}
	mustEcho(t, c, "a new call during the drain")

	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while calls were in flight", err)
	default:
	}
	for _, g := range gates {
		g.open()
	}
	res := r.results(2, nil)
	if res[1].code != status.OK || r.text(res[1]) != "raw" {
		t.Errorf("raw call in flight during the drain: %v %q", res[1].code, res[1].msg)
	}
	if res[3].code != status.OK || r.text(res[3]) != "late" {
		t.Errorf("raw call opened before the PING's answer: %v %q", res[3].code, res[3].msg)
	}
	for i, errc := range errcs {
		if err := recv(t, errc, "a call in flight during the drain"); err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if err := recv(t, shut, "Shutdown to return once the calls completed"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	r.expectClosed()
	mustEcho(t, c, "after the drain")
}
