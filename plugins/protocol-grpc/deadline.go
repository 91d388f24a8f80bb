package grpc

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel/status"
)

// Request deadlines.
//
// A unary or server-streaming call must receive its whole request (its one
// message and the end of the body) within request_timeout of its start (its
// headers): a peer that sends HEADERS and no body would otherwise hold the
// handler's goroutine, and its buffers, for as long as it likes. A timer
// started with the call breaks the body's read when it fires: through
// http.ResponseController.SetReadDeadline with a time already passed, which
// net/http's HTTP/2 server turns into closing the stream's body (the
// handler's read fails at once) and its HTTP/1.x server into the
// connection's read deadline. RecvMsg then fails with DEADLINE_EXCEEDED,
// the handler returns and the call is answered with that status.
// Client- and bidi-streaming calls have their request once their headers
// are in (the messages are the stream); over HTTP/1.x, where gRPC-Web sends
// them all at once, each read of their body must make progress within
// request_timeout instead (a connection read deadline set before it).
//
// Timers come from a pool, so that a call costs no allocation for its
// deadline: a timer goes back to the pool only when Stop says its function
// will not run.

// reqTimer is a pooled timer watching one call's request.
type reqTimer struct {
	t *time.Timer
	s atomic.Pointer[stream] // the call watched; nil once stopped or fired
}

var reqTimers sync.Pool

// startRequestTimer begins s's request deadline.
func (s *stream) startRequestTimer(d time.Duration) {
	rt, _ := reqTimers.Get().(*reqTimer)
	if rt == nil {
		rt = new(reqTimer)
	}
	rt.s.Store(s)
	if rt.t == nil {
		rt.t = time.AfterFunc(d, rt.fire)
	} else {
		rt.t.Reset(d)
	}
	s.rt = rt
}

func (rt *reqTimer) fire() {
	if s := rt.s.Swap(nil); s != nil {
		s.expire()
	}
}

// Request states.
const (
	reqWaiting = iota // the request is arriving
	reqDone           // the request arrived, or the call ended
	reqExpired        // request_timeout passed first
)

// expire breaks the read of a request still arriving.
func (s *stream) expire() {
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	if s.reqState != reqWaiting {
		return
	}
	s.reqState = reqExpired
	http.NewResponseController(s.w).SetReadDeadline(time.Unix(1, 0))
}

// requestDone ends the request deadline: the request arrived, or the call
// ended. It reports false when the deadline had passed first. After it, the
// timer no longer touches the call.
func (s *stream) requestDone() bool {
	rt := s.rt
	if rt == nil {
		return true
	}
	s.rt = nil
	rt.s.Store(nil)
	if rt.t.Stop() {
		reqTimers.Put(rt)
	}
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	if s.reqState == reqWaiting {
		s.reqState = reqDone
	}
	return s.reqState != reqExpired
}

// expiredErr is a call's error once its request did not arrive in time.
func (s *stream) expiredErr() error {
	return status.Errorf(status.DeadlineExceeded, "protocol.grpc: the request did not arrive within request_timeout (%v)", s.h.requestTimeout)
}

// progress sets the deadline of the next body read of an HTTP/1.x
// client- or bidi-streaming call.
func (s *stream) progress() {
	if s.h1Progress {
		http.NewResponseController(s.w).SetReadDeadline(time.Now().Add(s.h.requestTimeout))
	}
}
