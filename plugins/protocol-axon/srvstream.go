package native

import (
	"bufio"
	"context"
	"errors"
	"io"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// errStreamEnded ends a server stream's flow when its handler has returned.
var errStreamEnded = status.New(status.Canceled, "protocol.axon: the call has ended")

// srvStream is the server side of a streaming call, the kernel.ServerStream
// its handler gets. It lives from the call's HEADERS until its TRAILERS are
// written; unlike a unary call's state it is not recycled, because the
// connection's reader may still hold it for a frame it is reading. One
// goroutine may send (SendHeader, SendMsg) while another receives.
type srvStream struct {
	st          *sstream
	ctx         context.Context // the handler's context; set before the handler starts
	cancelCause context.CancelCauseFunc
	maxSend     uint32 // the client's max_message
	flow        flow

	headerSent bool // owned by the sending goroutine
}

// startStream starts a streaming call on a worker: the handler runs at once
// and receives the client's messages as they arrive. flowControl is false
// when a client that does not open streams (a unary Invoke) calls a
// streaming method: it grants no window, so sends are not limited by one.
func (c *serverConn) startStream(st *sstream, flowControl bool) {
	ss := &srvStream{st: st, maxSend: c.peerMaxMessage}
	ss.flow.init(c.srv.window, c.srv.maxWin, c.peerWindow, !flowControl)
	ss.flow.budget = c.srv.budget
	base, cancelCause := context.WithCancelCause(c.ctx)
	ctx, cancel := base, context.CancelFunc(func() { cancelCause(nil) })
	if st.timeout > 0 {
		tctx, tcancel := context.WithTimeout(base, st.timeout)
		ctx, cancel = tctx, func() { tcancel(); cancelCause(nil) }
	}
	ss.cancelCause = cancelCause
	c.mu.Lock()
	st.ss, st.ctx, st.cancel, st.started = ss, ctx, cancel, true
	c.mu.Unlock()
	c.earnResetCredit()
	c.srv.workers.run(st)
}

// onStreamData receives a DATA frame of a streaming call. A message over
// max_message or sent without flow-control credit ends the stream with
// RESOURCE_EXHAUSTED; its bytes are skipped without being buffered.
func (c *serverConn) onStreamData(br *bufio.Reader, h frameHeader, ss *srvStream) error {
	var se *status.Error
	if h.length > uint32(c.srv.limits.MaxMessage) {
		se = status.Errorf(status.ResourceExhausted, "request message of %d bytes exceeds the limit of %d bytes", h.length, c.srv.limits.MaxMessage)
	} else {
		switch err := ss.flow.admit(h.length, h.flags&flagBlocked != 0); err {
		case nil:
		case errOverWindow:
			se = status.Errorf(status.ResourceExhausted, "protocol.axon: stream %d: the client sent past its flow control window of %d bytes", h.stream, c.srv.window)
		default:
			// Half-closed or ended: nothing more is taken.
			return discard(br, int64(h.length))
		}
	}
	if se != nil {
		ss.flow.end(se, false)
		ss.cancelCause(se)
		return discard(br, int64(h.length))
	}
	if h.flags&flagNoMessage != 0 {
		if err := discard(br, int64(h.length)); err != nil {
			return err
		}
		ss.flow.push(nil, h.flags&flagEndStream != 0)
		return nil
	}
	// The message is charged to the process-wide budget before it is read
	// (and given back once decoded or dropped); over budget, the stream
	// ends with RESOURCE_EXHAUSTED.
	if !c.srv.budget.Acquire(int64(h.length)) {
		se = status.Errorf(status.ResourceExhausted, "protocol.axon: the server is over its budget of buffered bytes (max_buffered %d)", c.srv.limits.MaxBuffered)
		ss.flow.end(se, false)
		ss.cancelCause(se)
		return discard(br, int64(h.length))
	}
	// A queued message may wait long: its buffer comes from a size class,
	// so what a stream holds is bounded by its window (see getRecvBuf).
	msg := getRecvBuf(int(h.length))
	if _, err := io.ReadFull(br, *msg); err != nil {
		c.srv.budget.Release(int64(h.length))
		putRecvBuf(msg)
		return err
	}
	ss.flow.push(msg, h.flags&flagEndStream != 0)
	return nil
}

// handleStream runs a streaming call on a worker goroutine and ends it with
// the handler's status, or with the reason its context ended (deadline,
// cancellation, a limit the client broke), which takes precedence.
func (st *sstream) handleStream() {
	c, ss := st.c, st.ss
	st.call = kernel.ServerCall{Method: st.route.Method, Protocol: "axon", Peer: c.conn.RemoteAddr(), PeerIdentity: c.peerIdentity(), TLS: c.srv.d.TLS()}
	ctx := kernel.NewCallContext(st.ctx, &st.call)
	if st.md != nil {
		ctx = metadata.NewIncomingContext(ctx, st.md)
	}
	ss.ctx = ctx
	c.stats.Begin()
	st.begun = true
	st.running.Store(true)
	err := c.srv.d.HandleStream(st.route, ss)
	if st.ctx.Err() != nil {
		err = context.Cause(st.ctx)
	}
	c.finish(st, err)
}

// Context implements kernel.ServerStream.
func (ss *srvStream) Context() context.Context { return ss.ctx }

// endErr returns the status of a call whose context has ended.
func (ss *srvStream) endErr() error { return status.FromError(context.Cause(ss.st.ctx)) }

// SendHeader implements kernel.ServerStream.
func (ss *srvStream) SendHeader(md metadata.MD) error {
	if ss.headerSent {
		return status.New(status.Internal, "protocol.axon: the header was already sent")
	}
	if ss.ctx.Err() != nil {
		return ss.endErr()
	}
	if len(md) > 0 {
		if err := kernel.SetHeader(ss.ctx, md); err != nil {
			return err
		}
	}
	return ss.write(nil, false, 0)
}

// SendMsg implements kernel.ServerStream. It blocks while the client's
// window for the stream is exhausted, until the call ends.
func (ss *srvStream) SendMsg(m any) error {
	if ss.ctx.Err() != nil {
		return ss.endErr()
	}
	st := ss.st
	buf := getBuf(0)
	defer putBuf(buf)
	out, err := st.codec.Marshal(*buf, m)
	if err != nil {
		return status.Errorf(status.Internal, "encode response of %s: %v", st.route.Method.FullName, err)
	}
	*buf = out
	if uint64(len(out)) > uint64(ss.maxSend) {
		return status.Errorf(status.ResourceExhausted, "response message of %d bytes exceeds the client's limit of %d bytes", len(out), ss.maxSend)
	}
	flags, ok := ss.flow.spend(len(out), ss.ctx.Done())
	if !ok {
		return ss.endErr()
	}
	return ss.write(out, true, flags)
}

// write sends the header first if it was not sent yet (a stream always
// sends its header before its first message), then msg as a DATA frame with flags if
// has is set. A message is handed to the connection's stream writer
// (writeLater), so consecutive messages batch into few writes; a header
// alone is flushed at once.
func (ss *srvStream) write(msg []byte, has bool, flags byte) error {
	st := ss.st
	var hmd metadata.MD
	header := !ss.headerSent
	if header {
		hmd = st.call.Header
		ss.headerSent = true
	}
	fill := func(b []byte) []byte {
		if header {
			start := len(b)
			b = appendHeader(b, 0, frameHeaders, 0, st.id)
			b = setLength(appendMD(b, hmd), start)
		}
		if has {
			b = appendHeader(b, len(msg), frameData, flags, st.id)
			b = append(b, msg...)
		}
		return b
	}
	var err error
	if has {
		err = st.c.w.writeLater(fill)
	} else {
		err = st.c.w.write(fill)
	}
	if err != nil {
		return status.Errorf(status.Unavailable, "protocol.axon: send on stream %d: %v", st.id, err)
	}
	return nil
}

// RecvMsg implements kernel.ServerStream. Once the call's context is done
// it returns the reason, even if messages are still queued.
func (ss *srvStream) RecvMsg(m any) error {
	if ss.ctx.Err() != nil {
		return ss.endErr()
	}
	msg, err := ss.flow.take(ss.ctx.Done(), ss.endErr)
	if err != nil {
		return err
	}
	st := ss.st
	n := len(*msg)
	err = st.codec.Unmarshal(*msg, m) // does not retain the bytes
	putRecvBuf(msg)
	ss.flow.budget.Release(int64(n))
	if g := ss.flow.taken(n); g > 0 {
		st.c.w.writeLater(func(b []byte) []byte { return appendWindowUpdate(b, st.id, g) })
	}
	if err != nil {
		var se *status.Error
		if !errors.As(err, &se) {
			se = status.Errorf(status.Internal, "decode request of %s: %v", st.route.Method.FullName, err)
		}
		return se
	}
	return nil
}
