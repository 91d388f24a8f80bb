package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	static "github.com/axonrpc/axon/plugins/registry-static"
	quic "github.com/axonrpc/axon/plugins/transport-quic"
	uds "github.com/axonrpc/axon/plugins/transport-uds"
)

// The streaming tests run a service of streaming methods on a Runtime over
// real TCP, called through kernel.Client and the typed stream wrappers, or
// by a raw peer writing frames by hand.

const streamSvc = "axon.test.v1.Streams"

const (
	sCount  = "/" + streamSvc + "/Count"  // server streaming: text N: N messages "0".."N-1"; header and trailer metadata
	sConcat = "/" + streamSvc + "/Concat" // client streaming: the requests' texts joined
	sEcho   = "/" + streamSvc + "/Echo"   // bidi: each request echoed until the client half-closes
	sFail   = "/" + streamSvc + "/Fail"   // server streaming: text "CODE MSG": one message "x", then that status
	sPanic  = "/" + streamSvc + "/Panic"  // server streaming: one message, then a panic
	sHold   = "/" + streamSvc + "/Hold"   // bidi: first request TOKEN; sends "ready", waits for its context, reports it
	sFlood  = "/" + streamSvc + "/Flood"  // server streaming: text TOKEN: 1 KiB messages until a send fails, counted
	sSink   = "/" + streamSvc + "/Sink"   // client streaming: never reads; waits for its context
	sPing   = "/" + streamSvc + "/Ping"   // unary echo
)

// floodMax bounds what Flood sends: far more than any window.
const floodMax = 10000

// holdResult is what a Hold handler saw of its context.
type holdResult struct {
	err         error
	hasDeadline bool
}

type streamService struct {
	mu        sync.Mutex
	holds     map[string]chan holdResult
	floods    map[string]*atomic.Int64
	floodDone map[string]chan int64
}

func newStreamService() *streamService {
	return &streamService{holds: map[string]chan holdResult{}, floods: map[string]*atomic.Int64{}, floodDone: map[string]chan int64{}}
}

func (s *streamService) hold(token string) chan holdResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.holds[token] == nil {
		s.holds[token] = make(chan holdResult, 1)
	}
	return s.holds[token]
}

func (s *streamService) flood(token string) (*atomic.Int64, chan int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.floods[token] == nil {
		s.floods[token], s.floodDone[token] = new(atomic.Int64), make(chan int64, 1)
	}
	return s.floods[token], s.floodDone[token]
}

type (
	sReq  = echopb.SayRequest
	sResp = echopb.SayResponse
)

func (s *streamService) desc() *kernel.ServiceDesc {
	return kernel.NewService(streamSvc,
		kernel.ServerStreaming("Count", func(r *sReq, st kernel.ServerStreamingServer[sResp]) error {
			n, err := strconv.Atoi(r.GetText())
			if err != nil {
				return status.Errorf(status.InvalidArgument, "bad count %q", r.GetText())
			}
			h := metadata.New("h", "v")
			for k, vs := range metadata.FromIncomingContext(st.Context()) {
				h.Append("echo-"+k, vs...)
			}
			if err := st.SendHeader(h); err != nil {
				return err
			}
			if err := kernel.SetTrailer(st.Context(), metadata.New("t", "v", "count", r.GetText())); err != nil {
				return err
			}
			for i := range n {
				if err := st.Send(&sResp{Text: strconv.Itoa(i)}); err != nil {
					return err
				}
			}
			return nil
		}),
		kernel.ClientStreaming("Concat", func(st kernel.ClientStreamingServer[sReq, sResp]) error {
			var b strings.Builder
			for {
				m, err := st.Recv()
				if err == io.EOF {
					return st.SendAndClose(&sResp{Text: b.String()})
				}
				if err != nil {
					return err
				}
				b.WriteString(m.GetText())
			}
		}),
		kernel.BidiStreaming("Echo", func(st kernel.BidiStreamingServer[sReq, sResp]) error {
			for {
				m, err := st.Recv()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				if err := st.Send(&sResp{Text: m.GetText()}); err != nil {
					return err
				}
			}
		}),
		kernel.ServerStreaming("Fail", func(r *sReq, st kernel.ServerStreamingServer[sResp]) error {
			c, msg, _ := strings.Cut(r.GetText(), " ")
			n, err := strconv.Atoi(c)
			if err != nil {
				return status.Errorf(status.InvalidArgument, "bad code %q", c)
			}
			if err := st.Send(&sResp{Text: "x"}); err != nil {
				return err
			}
			kernel.SetTrailer(st.Context(), metadata.New("why", msg))
			return status.New(status.Code(n), msg)
		}),
		kernel.ServerStreaming("Panic", func(r *sReq, st kernel.ServerStreamingServer[sResp]) error {
			if err := st.Send(&sResp{Text: "x"}); err != nil {
				return err
			}
			panic("stream handler panics on purpose")
		}),
		kernel.BidiStreaming("Hold", func(st kernel.BidiStreamingServer[sReq, sResp]) error {
			m, err := st.Recv()
			if err != nil {
				return err
			}
			if err := st.Send(&sResp{Text: "ready"}); err != nil {
				return err
			}
			var res holdResult
			_, res.hasDeadline = st.Context().Deadline()
			select {
			case <-st.Context().Done():
				res.err = st.Context().Err()
			case <-time.After(testTimeout):
				res.err = errors.New("stream context was never done")
			}
			s.hold(m.GetText()) <- res
			return res.err
		}),
		kernel.ServerStreaming("Flood", func(r *sReq, st kernel.ServerStreamingServer[sResp]) error {
			count, done := s.flood(r.GetText())
			msg := &sResp{Text: strings.Repeat("f", 1024)}
			var err error
			for range floodMax {
				if err = st.Send(msg); err != nil {
					break
				}
				count.Add(1)
			}
			done <- count.Load()
			return err
		}),
		kernel.ClientStreaming("Sink", func(st kernel.ClientStreamingServer[sReq, sResp]) error {
			<-st.Context().Done()
			return st.Context().Err()
		}),
		kernel.Unary("Ping", func(_ context.Context, r *sReq) (*sResp, error) {
			return &sResp{Text: r.GetText()}, nil
		}),
	)
}

// streamServer is a Runtime serving the streaming service.
type streamServer struct {
	svc  *streamService
	rt   *kernel.Runtime
	addr string
}

func startStreamServer(t *testing.T, c srvConf) *streamServer {
	t.Helper()
	s := &streamServer{svc: newStreamService()}
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{s.svc.desc()})
	if err != nil {
		t.Fatal(err)
	}
	s.rt = kernel.NewRuntime(newCatalog(t, &probe{}), table, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.rt.Apply(ctx, parseConfig(t, c.yaml())); err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.rt.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	s.addr = s.rt.Endpoints()[0].Address
	return s
}

func streamCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestStreamShapes runs the three streaming shapes end to end, with
// messages below, around and above the default 64 KiB flow-control window,
// so that WINDOW_UPDATEs flow both ways and a message larger than a window
// still goes through.
func TestStreamShapes(t *testing.T) {
	srv := startStreamServer(t, srvConf{})
	c := newClient(t, srv.addr, 1)
	tests := []struct {
		name string
		run  func(t *testing.T, ctx context.Context)
	}{
		{"server streaming", func(t *testing.T, ctx context.Context) {
			st, err := kernel.OpenServerStream[sReq, sResp](ctx, c, sCount, &sReq{Text: "500"})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 500 {
				m, err := st.Recv()
				if err != nil || m.GetText() != strconv.Itoa(i) {
					t.Fatalf("message %d: %q, %v", i, m.GetText(), err)
				}
			}
			if _, err := st.Recv(); err != io.EOF {
				t.Fatalf("after the last message: %v, want io.EOF", err)
			}
		}},
		{"client streaming", func(t *testing.T, ctx context.Context) {
			st, err := kernel.OpenClientStream[sReq, sResp](ctx, c, sConcat)
			if err != nil {
				t.Fatal(err)
			}
			var want strings.Builder
			for i := range 200 {
				part := fmt.Sprintf("%d:%s;", i, strings.Repeat("c", 700))
				want.WriteString(part)
				if err := st.Send(&sReq{Text: part}); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			got, err := st.CloseAndRecv()
			if err != nil || got.GetText() != want.String() {
				t.Fatalf("CloseAndRecv: %d bytes, %v; want %d bytes", len(got.GetText()), err, want.Len())
			}
		}},
		{"bidi, concurrent send and receive", func(t *testing.T, ctx context.Context) {
			st, err := kernel.OpenBidiStream[sReq, sResp](ctx, c, sEcho)
			if err != nil {
				t.Fatal(err)
			}
			const n = 300
			sent := make(chan error, 1)
			go func() {
				for i := range n {
					if err := st.Send(&sReq{Text: fmt.Sprintf("%d %s", i, strings.Repeat("b", 1000))}); err != nil {
						sent <- err
						return
					}
				}
				sent <- st.CloseSend()
			}()
			for i := range n {
				m, err := st.Recv()
				if err != nil || !strings.HasPrefix(m.GetText(), strconv.Itoa(i)+" ") {
					t.Fatalf("message %d: %.10q, %v", i, m.GetText(), err)
				}
			}
			if _, err := st.Recv(); err != io.EOF {
				t.Fatalf("after the last message: %v, want io.EOF", err)
			}
			if err := recv(t, sent, "the sender"); err != nil {
				t.Fatal(err)
			}
		}},
		{"bidi, messages larger than the window", func(t *testing.T, ctx context.Context) {
			st, err := kernel.OpenBidiStream[sReq, sResp](ctx, c, sEcho)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				big := strings.Repeat(strconv.Itoa(i), 300<<10)
				if err := st.Send(&sReq{Text: big}); err != nil {
					t.Fatal(err)
				}
				m, err := st.Recv()
				if err != nil || m.GetText() != big {
					t.Fatalf("message %d: %d bytes, %v", i, len(m.GetText()), err)
				}
			}
			st.CloseSend()
			if _, err := st.Recv(); err != io.EOF {
				t.Fatalf("after half-close: %v, want io.EOF", err)
			}
		}},
		{"a streaming client calling a unary method", func(t *testing.T, ctx context.Context) {
			st, err := kernel.OpenServerStream[sReq, sResp](ctx, c, sPing, &sReq{Text: "one"})
			if err != nil {
				t.Fatal(err)
			}
			if m, err := st.Recv(); err != nil || m.GetText() != "one" {
				t.Fatalf("response %q, %v", m.GetText(), err)
			}
			if _, err := st.Recv(); err != io.EOF {
				t.Fatalf("after the response: %v, want io.EOF", err)
			}
		}},
		{"half-close with no message", func(t *testing.T, ctx context.Context) {
			st, err := kernel.OpenClientStream[sReq, sResp](ctx, c, sConcat)
			if err != nil {
				t.Fatal(err)
			}
			got, err := st.CloseAndRecv()
			if err != nil || got.GetText() != "" {
				t.Fatalf("CloseAndRecv: %q, %v", got.GetText(), err)
			}
		}},
		{"send after the end returns io.EOF", func(t *testing.T, ctx context.Context) {
			st, err := kernel.OpenBidiStream[sReq, sResp](ctx, c, sFail)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&sReq{Text: "5 gone"}); err != nil {
				t.Fatal(err)
			}
			st.CloseSend() // a server-streaming method waits for the half-close
			for {
				if _, err := st.Recv(); err != nil {
					break
				}
			}
			if err := st.Send(&sReq{Text: "late"}); err != io.EOF {
				t.Fatalf("send after the end: %v, want io.EOF", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, streamCtx(t)) })
	}
}

// TestStreamMetadata: request metadata reaches the handler, the header the
// handler sends arrives before the messages, and the trailer after them.
func TestStreamMetadata(t *testing.T) {
	srv := startStreamServer(t, srvConf{})
	c := newClient(t, srv.addr, 1)
	ctx := metadata.NewOutgoingContext(streamCtx(t), metadata.New("k", "1"))
	var hOpt, tOpt metadata.MD
	st, err := kernel.OpenServerStream[sReq, sResp](ctx, c, sCount, &sReq{Text: "3"}, kernel.Header(&hOpt), kernel.Trailer(&tOpt))
	if err != nil {
		t.Fatal(err)
	}
	h, err := st.Header()
	if err != nil || h.Get("h") != "v" || h.Get("echo-k") != "1" {
		t.Fatalf("header %v, %v", h, err)
	}
	for {
		if _, err := st.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if tr := st.Trailer(); tr.Get("t") != "v" || tr.Get("count") != "3" {
		t.Fatalf("trailer %v", tr)
	}
	// The call options' destinations are filled when the call has ended.
	if hOpt.Get("h") != "v" || tOpt.Get("count") != "3" {
		t.Fatalf("kernel.Header gave %v, kernel.Trailer %v", hOpt, tOpt)
	}
}

// TestStreamStatus: a handler's status and a handler's panic end the
// stream after the messages sent before them.
func TestStreamStatus(t *testing.T) {
	srv := startStreamServer(t, srvConf{})
	c := newClient(t, srv.addr, 1)
	tests := []struct {
		name, method, text string
		code               status.Code
		msg                string
	}{
		{"status from the handler", sFail, "5 no such thing", status.NotFound, "no such thing"},
		{"another status", sFail, "9 not now", status.FailedPrecondition, "not now"},
		{"panic is INTERNAL", sPanic, "", status.Internal, ""},
		{"bad argument before any message", sCount, "many", status.InvalidArgument, `bad count "many"`},
		{"unknown method", "/" + streamSvc + "/Nope", "", status.Unimplemented, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := kernel.OpenServerStream[sReq, sResp](streamCtx(t), c, tt.method, &sReq{Text: tt.text})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				m, err := st.Recv()
				if err == nil {
					got = append(got, m.GetText())
					continue
				}
				se := status.FromError(err)
				if se.Code() != tt.code || (tt.msg != "" && se.Message() != tt.msg) {
					t.Fatalf("status %v, want %v %q", err, tt.code, tt.msg)
				}
				break
			}
			if tt.method != sCount && tt.code != status.Unimplemented && len(got) != 1 {
				t.Errorf("messages before the status: %q, want one", got)
			}
			if tt.method == sFail && st.Trailer().Get("why") != tt.msg {
				t.Errorf("trailer %v", st.Trailer())
			}
		})
	}
}

// TestStreamCancelAndDeadline: cancelling the client's context, or its
// deadline passing, mid-stream ends the stream on both sides: the handler's
// context is done.
func TestStreamCancelAndDeadline(t *testing.T) {
	srv := startStreamServer(t, srvConf{})
	c := newClient(t, srv.addr, 1)
	tests := []struct {
		name    string
		timeout time.Duration // 0: cancel instead
		code    status.Code
	}{
		{"cancel", 0, status.Canceled},
		{"deadline", 300 * time.Millisecond, status.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(streamCtx(t))
			if tt.timeout > 0 {
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
			}
			defer cancel()
			token := t.Name()
			st, err := kernel.OpenBidiStream[sReq, sResp](ctx, c, sHold)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Send(&sReq{Text: token}); err != nil {
				t.Fatal(err)
			}
			if m, err := st.Recv(); err != nil || m.GetText() != "ready" {
				t.Fatalf("first message %q, %v", m.GetText(), err)
			}
			if tt.timeout == 0 {
				cancel()
			}
			if _, err := st.Recv(); codeOf(err) != tt.code {
				t.Fatalf("after the end: %v, want %v", err, tt.code)
			}
			res := recv(t, srv.svc.hold(token), "the handler's report")
			if res.err == nil {
				t.Fatal("handler context not done")
			}
			if tt.timeout > 0 && !res.hasDeadline {
				t.Error("handler context has no deadline")
			}
			// The stream's slot comes back: calls still work.
			if got := mustSay(t, c, sPing, "after"); got != "after" {
				t.Fatalf("ping: %q", got)
			}
		})
	}
}

// TestStreamBackPressure: a side that does not read makes the other block
// in SendMsg after about one window (64 KiB by default, 1 KiB messages),
// instead of buffering without bound; the blocked sender is released when
// the call ends.
func TestStreamBackPressure(t *testing.T) {
	const window, msgSize = 64 << 10, 1024
	const bound = window/msgSize + 2 // sends while credit is positive, plus one in flight
	srv := startStreamServer(t, srvConf{})
	c := newClient(t, srv.addr, 1)

	t.Run("server to a client that does not read", func(t *testing.T) {
		ctx, cancel := context.WithCancel(streamCtx(t))
		defer cancel()
		count, done := srv.svc.flood(t.Name())
		st, err := kernel.OpenServerStream[sReq, sResp](ctx, c, sFlood, &sReq{Text: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the server to fill the window", func() bool { return count.Load() >= window/(msgSize+16) })
		cancel()
		if n := recv(t, done, "the flood handler to end"); n > bound || n >= floodMax {
			t.Fatalf("server sent %d messages to a client that read none; want at most %d", n, bound)
		}
		if _, err := st.Recv(); codeOf(err) != status.Canceled {
			t.Fatalf("recv after cancel: %v", err)
		}
	})

	t.Run("client to a server that does not read", func(t *testing.T) {
		ctx, cancel := context.WithCancel(streamCtx(t))
		defer cancel()
		st, err := kernel.OpenClientStream[sReq, sResp](ctx, c, sSink)
		if err != nil {
			t.Fatal(err)
		}
		var sent atomic.Int64
		done := make(chan error, 1)
		go func() {
			msg := &sReq{Text: strings.Repeat("s", msgSize)}
			for range floodMax {
				if err := st.Send(msg); err != nil {
					done <- err
					return
				}
				sent.Add(1)
			}
			done <- nil
		}()
		waitFor(t, "the client to fill the window", func() bool { return sent.Load() >= window/(msgSize+16) })
		cancel()
		if err := recv(t, done, "the sender to stop"); err != io.EOF {
			t.Fatalf("blocked send after cancel: %v, want io.EOF", err)
		}
		if n := sent.Load(); n > bound {
			t.Fatalf("client sent %d messages to a server that read none; want at most %d", n, bound)
		}
	})
}

// TestStreamConcurrencyLimit: streams count against max_concurrent_streams.
// The client waits for a slot rather than be refused, and gets it when a
// stream ends.
func TestStreamConcurrencyLimit(t *testing.T) {
	srv := startStreamServer(t, srvConf{Limits: "{max_concurrent_streams: 2}"})
	c := newClient(t, srv.addr, 1)
	var cancels []context.CancelFunc
	for i := range 2 {
		ctx, cancel := context.WithCancel(streamCtx(t))
		defer cancel()
		cancels = append(cancels, cancel)
		st, err := kernel.OpenBidiStream[sReq, sResp](ctx, c, sHold)
		if err != nil {
			t.Fatal(err)
		}
		st.Send(&sReq{Text: fmt.Sprint(t.Name(), i)})
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	// A third call waits for a slot until its deadline.
	short, cancel := context.WithTimeout(streamCtx(t), 200*time.Millisecond)
	defer cancel()
	if _, err := say(short, c, sPing, "third"); codeOf(err) != status.DeadlineExceeded {
		t.Fatalf("third call while two streams run: %v, want DEADLINE_EXCEEDED", err)
	}
	cancels[0]()
	recv(t, srv.svc.hold(fmt.Sprint(t.Name(), 0)), "the first stream's handler")
	if got := mustSay(t, c, sPing, "third"); got != "third" {
		t.Fatalf("third call after a stream ended: %q", got)
	}
}

// TestStreamDrain: a server told to shut down sends GOAWAY, refuses new
// calls, and lets an open stream run to its end before it stops.
func TestStreamDrain(t *testing.T) {
	srv := startStreamServer(t, srvConf{})
	c := newClient(t, srv.addr, 1)
	ctx := streamCtx(t)
	st, err := kernel.OpenBidiStream[sReq, sResp](ctx, c, sEcho)
	if err != nil {
		t.Fatal(err)
	}
	echo := func(text string) {
		t.Helper()
		if err := st.Send(&sReq{Text: text}); err != nil {
			t.Fatalf("send %q: %v", text, err)
		}
		if m, err := st.Recv(); err != nil || m.GetText() != text {
			t.Fatalf("echo of %q: %q, %v", text, m.GetText(), err)
		}
	}
	echo("before")
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		stopped <- srv.rt.Shutdown(ctx)
	}()
	// New calls are refused once the server is going away.
	other := newClient(t, srv.addr, 1)
	waitFor(t, "new calls to be refused", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := say(ctx, other, sPing, "x")
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("server stopped (%v) while a stream was open", err)
	default:
	}
	echo("during the drain")
	st.CloseSend()
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("end of the stream: %v, want io.EOF", err)
	}
	if err := recv(t, stopped, "the server to stop"); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// rawStreamCall opens a stream by hand: HEADERS with the stream flag.
func rawStreamCall(r *rawConn, stream uint32, timeout time.Duration, method string) {
	r.t.Helper()
	r.writeFrame(ftHeaders, flStream, stream, headersPayload(timeout, method, "proto"))
}

func sayBytes(text string) []byte {
	b, err := proto.Marshal(&sReq{Text: text})
	if err != nil {
		panic(err)
	}
	return b
}

// TestStreamRawPeer drives streams by hand to check what a client cannot
// make the kernel's client do: the server enforces the deadline itself,
// refuses streams above max_concurrent_streams, ends a stream whose client
// breaks flow control or max_message with RESOURCE_EXHAUSTED, and ignores
// DATA and WINDOW_UPDATE on unknown streams; the connection keeps serving.
func TestStreamRawPeer(t *testing.T) {
	srv := startStreamServer(t, srvConf{Limits: "{max_concurrent_streams: 2, max_message: 64KiB}"})
	tests := []struct {
		name string
		send func(r *rawConn) // opens stream 1 (and maybe more)
		want map[uint32]status.Code
		// refused streams, by id
		refused map[uint32]bool
	}{
		{"deadline enforced by the server", func(r *rawConn) {
			rawStreamCall(r, 1, 100*time.Millisecond, sHold)
			r.writeFrame(ftData, 0, 1, sayBytes("raw-deadline"))
		}, map[uint32]status.Code{1: status.DeadlineExceeded}, nil},
		{"streams above the limit are refused", func(r *rawConn) {
			for id := uint32(1); id <= 3; id++ {
				rawStreamCall(r, id, 0, sSink)
			}
			r.writeFrame(ftCancel, 0, 1, []byte{1})
			r.writeFrame(ftCancel, 0, 2, []byte{1})
		}, map[uint32]status.Code{1: status.Canceled, 2: status.Canceled, 3: status.Unavailable}, map[uint32]bool{3: true}},
		{"message over max_message", func(r *rawConn) {
			rawStreamCall(r, 1, 0, sEcho)
			r.writeFrame(ftData, 0, 1, sayBytes(strings.Repeat("m", 70<<10)))
		}, map[uint32]status.Code{1: status.ResourceExhausted}, nil},
		{"sending past the window", func(r *rawConn) {
			rawStreamCall(r, 1, 0, sSink)
			msg := sayBytes(strings.Repeat("w", 1000))
			var b []byte
			for range 80 { // 80 KB: more than the 64 KiB window
				b = appendFrame(b, ftData, 0, 1, msg)
			}
			r.write(b)
		}, map[uint32]status.Code{1: status.ResourceExhausted}, nil},
		{"frames on unknown streams are ignored", func(r *rawConn) {
			r.writeFrame(ftData, 0, 7, sayBytes("nobody"))
			r.writeFrame(ftWindow, 0, 9, []byte{0xff, 0xff, 0x03})
			r.writeFrame(ftData, flEndStream|flNoMessage, 11, nil)
			r.write(callFrames(13, 0, sPing, "proto", "alive"))
		}, map[uint32]status.Code{13: status.OK}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, srv.addr)
			r.handshake()
			tt.send(r)
			got := r.readResults(len(tt.want))
			for id, code := range tt.want {
				if got[id].code != code || got[id].refused != tt.refused[id] {
					t.Errorf("stream %d: %v %q (refused %v), want %v (refused %v)", id, got[id].code, got[id].msg, got[id].refused, code, tt.refused[id])
				}
			}
			// The connection still serves.
			r.write(callFrames(101, 0, sPing, "proto", "still"))
			if res := r.readResults(1)[101]; res.code != status.OK || res.text != "still" {
				t.Fatalf("call after the test: %v %q %q", res.code, res.msg, res.text)
			}
		})
	}
}

// TestStreamTransports: streams, their flow control and a message larger
// than the window work over the Unix-socket and QUIC transports too.
func TestStreamTransports(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	stateDir := t.TempDir()
	sock := filepath.Join(t.TempDir(), "s.sock")
	cat, err := kernel.NewCatalog([]kernel.Factory{native.Factory, protocodec.Factory, static.Factory, quic.Factory, uds.Factory})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, listen, transports string
	}{
		{"uds", fmt.Sprintf("{transport: uds, address: %q}", sock), "{}"},
		{"quic", fmt.Sprintf("{transport: quic, address: \"127.0.0.1:0\", options: {state_dir: %q}}", stateDir),
			fmt.Sprintf("{quic: {options: {state_dir: %q}}}", stateDir)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newStreamService()
			table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc.desc()})
			if err != nil {
				t.Fatal(err)
			}
			rt := kernel.NewRuntime(cat, table, nil)
			ctx := streamCtx(t)
			defer rt.Shutdown(ctx)
			base := "service: s\ntls: {mode: \"off\"}\nregistry: {use: static}\n"
			if err := rt.Apply(ctx, parseConfig(t, base+"listen: ["+tt.listen+"]\n")); err != nil {
				t.Fatal(err)
			}
			client, err := kernel.BuildClient(cat, parseConfig(t, base+"client: {transports: "+tt.transports+"}\n"), rt.Endpoints()[0].Address, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()

			st, err := kernel.OpenBidiStream[sReq, sResp](ctx, client, sEcho)
			if err != nil {
				t.Fatal(err)
			}
			for i, n := range []int{10, 1000, 200 << 10} {
				text := strings.Repeat(strconv.Itoa(i), n)
				if err := st.Send(&sReq{Text: text}); err != nil {
					t.Fatal(err)
				}
				if m, err := st.Recv(); err != nil || m.GetText() != text {
					t.Fatalf("message %d: %d bytes, %v", i, len(m.GetText()), err)
				}
			}
			st.CloseSend()
			if _, err := st.Recv(); err != io.EOF {
				t.Fatalf("end: %v, want io.EOF", err)
			}
			count, err := kernel.OpenServerStream[sReq, sResp](ctx, client, sCount, &sReq{Text: "300"})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for ; ; n++ {
				if _, err := count.Recv(); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
			if n != 300 {
				t.Fatalf("received %d messages, want 300", n)
			}
		})
	}
}
