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
//
// A call waiting for its request also holds a goroutine, its headers and
// net/http's stream state until the request arrives, so it is charged to
// the process-wide budget meanwhile as a kernel.Wait: when the budget is
// spent, the calls (of any protocol) that have waited longest are failed
// first with RESOURCE_EXHAUSTED, and only when none is waiting is the new
// call itself refused.

// reqTimer is a pooled timer watching one call's request.
type reqTimer struct {
	t *time.Timer
	s atomic.Pointer[stream] // the call watched; nil once stopped or fired
}

var reqTimers sync.Pool

// waitCharge is what a call waiting for its request is charged to the
// budget (kernel.Budget.Await): about the memory it holds (a goroutine, its
// headers up to max_metadata, net/http's state).
const waitCharge = 16 << 10

// startRequestTimer charges s to the budget as a waiting call and begins
// its request deadline. It reports false, doing nothing, when the call
// cannot wait for its request: the budget is spent even with every waiting
// call evicted (kernel.Budget.Await).
func (s *stream) startRequestTimer(d time.Duration) bool {
	if !s.h.budget.Await(&s.wait, waitCharge, s) {
		return false
	}
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
	return true
}

func (rt *reqTimer) fire() {
	if s := rt.s.Swap(nil); s != nil {
		s.breakRequest(reqExpired)
	}
}

// Request states.
const (
	reqWaiting = iota // the request is arriving
	reqDone           // the request arrived, or the call ended
	reqExpired        // request_timeout passed first
	reqEvicted        // evicted to make room in the budget (Evict)
)

// Evict fails the call, which waited longest for its request, to make
// room in the budget (kernel.Waiter).
func (s *stream) Evict() { s.breakRequest(reqEvicted) }

// breakRequest breaks the read of a request still arriving; why is
// reqExpired or reqEvicted.
func (s *stream) breakRequest(why uint8) {
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	if s.reqState != reqWaiting {
		return
	}
	s.reqState = why
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
	s.h.budget.Leave(&s.wait)
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	if s.reqState == reqWaiting {
		s.reqState = reqDone
	}
	return s.reqState == reqDone
}

// expiredErr is a call's error once its request did not arrive in time,
// or it was evicted from the waiting calls.
func (s *stream) expiredErr() error {
	if s.reqState == reqEvicted {
		return errEvicted
	}
	return status.Errorf(status.DeadlineExceeded, "protocol.grpc: the request did not arrive within request_timeout (%v)", s.h.requestTimeout)
}

// errEvicted fails a call that waited longest for its request when the
// budget had to make room, and a call that found no room at all.
var errEvicted = status.New(status.ResourceExhausted, "protocol.grpc: the server is over its budget of buffered bytes (max_buffered) and this call's request had not arrived")

// progress sets the deadline of the next body read of an HTTP/1.x
// client- or bidi-streaming call.
func (s *stream) progress() {
	if s.h1Progress {
		http.NewResponseController(s.w).SetReadDeadline(time.Now().Add(s.h.requestTimeout))
	}
}
