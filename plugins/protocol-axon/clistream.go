package native

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// schemaDueLocked reports whether call must carry its schema fingerprint:
// the first call of each method on a connection does (and a call after a
// change of fingerprint, such as another codec). It records the
// fingerprint as sent; s.mu is held, inside the writer's critical section,
// so the call carrying it reaches the server before any that rely on it.
func (s *session) schemaDueLocked(call *kernel.ClientCall) bool {
	if call.Schema == "" || s.sentSchema[call.Method] == call.Schema {
		return false
	}
	s.sentSchema[call.Method] = call.Schema
	return true
}

// schemaLost reports whether a call that carried its schema fingerprint
// failed in a way that may mean the server never read its HEADERS: it was
// refused, its connection failed, or its header block was over the
// server's limit. Any other failure left the fingerprint recorded.
func schemaLost(err error) bool {
	if err == nil {
		return false
	}
	switch status.CodeOf(err) {
	case status.Unavailable, status.ResourceExhausted:
		return true
	}
	return status.IsRefused(err)
}

// forgetSchema makes the next call of method carry schema again.
func (s *session) forgetSchema(method, schema string) {
	s.mu.Lock()
	if s.sentSchema[method] == schema {
		delete(s.sentSchema, method)
	}
	s.mu.Unlock()
}

// cstream is the client side of a streaming call, the kernel.ClientStream
// NewStream returns. It stays in the session's streams map, holding one of
// the server's stream slots, until the server's TRAILERS say the server
// side has ended (or the connection ends), even when this side ended it
// first by cancelling. One goroutine may send while another receives.
type cstream struct {
	s          *session
	id         uint32
	ctx        context.Context
	method     string
	codec      kernel.Codec
	schema     string       // the fingerprint this stream carried, if any
	headerOut  *metadata.MD // kernel.Header's destination, or nil; filled when the call ends
	trailerOut *metadata.MD // kernel.Trailer's destination, or nil; filled when the call ends
	flow       flow
	done       chan struct{} // closed when the call has ended for this side
	gotHeader  chan struct{} // closed when the header has arrived

	mu      sync.Mutex
	ended   bool
	st      *status.Error // the call's status once ended; nil for OK
	header  metadata.MD
	hasHdr  bool
	trailer metadata.MD
	stop    func() bool // unregisters the context watch

	sendClosed bool // owned by the sending goroutine
}

// NewStream implements kernel.Session. It waits for a stream slot the
// server allows, sends the call's HEADERS, and returns; messages flow with
// SendMsg and RecvMsg. The deadline of ctx travels with the call and the
// server enforces it; cancelling ctx sends CANCEL and ends the stream.
func (s *session) NewStream(ctx context.Context, call *kernel.ClientCall) (kernel.ClientStream, error) {
	select {
	case s.slots <- struct{}{}:
	default:
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, status.FromError(ctx.Err())
		case <-s.done:
			return nil, status.Refused("connection closed")
		}
	}
	var timeout uint64
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			<-s.slots
			return nil, status.Errorf(status.DeadlineExceeded, "deadline exceeded before %s was sent", call.Method)
		}
		timeout = uint64(max(left.Microseconds(), 1))
	}
	cs := &cstream{s: s, ctx: ctx, method: call.Method, codec: call.Codec, headerOut: call.Header, trailerOut: call.Trailer,
		done: make(chan struct{}), gotHeader: make(chan struct{})}
	cs.flow.init(s.window, s.maxWin, s.peerWindow, false)
	s.inflight.Add(1)

	registered, refused := false, false
	codec := call.Codec.Name()
	err := s.w.write(func(b []byte) []byte {
		s.mu.Lock()
		if !s.accepting.Load() {
			s.mu.Unlock()
			refused = true
			return b
		}
		cs.id = s.nextID
		s.nextID++
		s.streams[cs.id] = cs
		registered = true
		if s.schemaDueLocked(call) {
			cs.schema = call.Schema
		}
		s.mu.Unlock()
		start := len(b)
		b = appendHeader(b, 0, frameHeaders, flagStream, cs.id)
		b = binary.AppendUvarint(b, timeout)
		b = appendString(b, call.Method)
		b = appendString(b, codec)
		b = appendMD(b, call.Metadata)
		if cs.schema != "" {
			b = appendString(b, cs.schema)
		}
		return setLength(b, start)
	})
	if !registered {
		<-s.slots
		s.callDone()
		if refused {
			return nil, status.Refused("connection is going away")
		}
		return nil, status.Refused("connection closed before the call was sent")
	}
	if err != nil {
		// As in Invoke: the reader reads what the server sent first, then
		// ends the stream, refused if the server never ran it.
		s.conn.SetReadDeadline(time.Now().Add(time.Second))
		<-cs.done
		if err := cs.err(); status.IsRefused(err) {
			return nil, err
		}
		return cs, nil
	}
	stop := context.AfterFunc(ctx, cs.cancel)
	cs.mu.Lock()
	if cs.ended {
		cs.mu.Unlock()
		stop()
	} else {
		cs.stop = stop
		cs.mu.Unlock()
	}
	return cs, nil
}

// release gives back the stream slot of a stream the server has ended (or
// that the connection's end has ended); cs has left s.streams.
func (s *session) release(cs *cstream) {
	<-s.slots
	s.callDone()
}

// onStreamData receives a DATA frame of a streaming call. A message over
// max_message or sent without flow-control credit ends the stream with
// RESOURCE_EXHAUSTED and cancels it on the server; its bytes are skipped.
func (s *session) onStreamData(br *bufio.Reader, h frameHeader, cs *cstream) error {
	var se *status.Error
	if h.length > uint32(s.limits.MaxMessage) {
		se = status.Errorf(status.ResourceExhausted, "response message of %d bytes exceeds the limit of %d bytes", h.length, s.limits.MaxMessage)
	} else {
		switch err := cs.flow.admit(h.length, h.flags&flagBlocked != 0); err {
		case nil:
		case errOverWindow:
			se = status.Errorf(status.ResourceExhausted, "protocol.axon: stream %d: the server sent past its flow control window of %d bytes", h.stream, s.window)
		default:
			return discard(br, int64(h.length))
		}
	}
	if se != nil {
		if err := discard(br, int64(h.length)); err != nil {
			return err
		}
		cs.fail(se)
		return nil
	}
	if h.flags&flagNoMessage != 0 {
		return discard(br, int64(h.length))
	}
	msg := getRecvBuf(int(h.length))
	if _, err := io.ReadFull(br, *msg); err != nil {
		putRecvBuf(msg)
		return err
	}
	cs.flow.push(msg, false)
	return nil
}

// finish ends the call for this side with st (nil for OK) and trailer. With
// keep, messages already received are delivered before the end. It reports
// whether this call ended the stream.
func (cs *cstream) finish(st *status.Error, trailer metadata.MD, keep bool) bool {
	cs.mu.Lock()
	if cs.ended {
		cs.mu.Unlock()
		return false
	}
	cs.ended, cs.st, cs.trailer = true, st, trailer
	// kernel.Header and kernel.Trailer destinations are filled once, when
	// the call ends, so that a caller reading them after RecvMsg returned
	// its error does not race the connection's reader.
	if cs.headerOut != nil && cs.hasHdr {
		*cs.headerOut = cs.header
	}
	if cs.trailerOut != nil && trailer != nil {
		*cs.trailerOut = trailer
	}
	stop := cs.stop
	cs.mu.Unlock()
	var ferr error = io.EOF
	if st != nil {
		ferr = st
		if cs.schema != "" && schemaLost(st) {
			cs.s.forgetSchema(cs.method, cs.schema)
		}
	}
	cs.flow.end(ferr, keep)
	close(cs.done)
	if stop != nil {
		stop()
	}
	return true
}

// fail ends the call with se and tells the server to stop it.
func (cs *cstream) fail(se *status.Error) {
	if cs.finish(se, nil, false) {
		cs.s.w.write(func(b []byte) []byte {
			b = appendHeader(b, 1, frameCancel, 0, cs.id)
			return append(b, byte(se.Code()))
		})
	}
}

// cancel runs when the stream's context is done.
func (cs *cstream) cancel() { cs.fail(status.FromError(cs.ctx.Err())) }

// hasEnded reports whether the call has ended for this side. It is true
// before RecvMsg can return the end (finish sets it first).
func (cs *cstream) hasEnded() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.ended
}

// err returns the call's status once it has ended: nil for OK.
func (cs *cstream) err() error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.st == nil {
		return nil
	}
	return cs.st
}

func (cs *cstream) setHeader(md metadata.MD) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.hasHdr || cs.ended {
		return
	}
	cs.header, cs.hasHdr = md, true
	close(cs.gotHeader)
}

// Context implements kernel.ClientStream.
func (cs *cstream) Context() context.Context { return cs.ctx }

// Header implements kernel.ClientStream. A server sends the header before
// its first message; a call that ended without one returns a nil header
// and the call's status (nil when it succeeded without any message).
func (cs *cstream) Header() (metadata.MD, error) {
	select {
	case <-cs.gotHeader:
	case <-cs.done:
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.hasHdr {
		return cs.header, nil
	}
	if cs.st == nil {
		return nil, nil
	}
	return nil, cs.st
}

// Trailer implements kernel.ClientStream.
func (cs *cstream) Trailer() metadata.MD {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.trailer
}

// errSendClosed is SendMsg's error after CloseSend.
var errSendClosed = status.New(status.Internal, "protocol.axon: SendMsg after CloseSend")

// SendMsg implements kernel.ClientStream. It blocks while the server's
// window for the stream is exhausted; once the call has ended it returns
// io.EOF.
func (cs *cstream) SendMsg(m any) error {
	if cs.hasEnded() {
		return io.EOF
	}
	if cs.sendClosed {
		return errSendClosed
	}
	buf := getBuf(0)
	defer putBuf(buf)
	out, err := cs.codec.Marshal(*buf, m)
	if err != nil {
		return status.Errorf(status.Internal, "encode request of %s: %v", cs.method, err)
	}
	*buf = out
	if uint64(len(out)) > uint64(cs.s.peerMaxMessage) {
		return status.Errorf(status.ResourceExhausted, "request message of %d bytes exceeds the server's limit of %d bytes", len(out), cs.s.peerMaxMessage)
	}
	flags, ok := cs.flow.spend(len(out), cs.done)
	if !ok {
		return io.EOF
	}
	// Handed to the connection's stream writer: consecutive messages batch
	// into few writes.
	if err := cs.s.w.writeLater(func(b []byte) []byte {
		b = appendHeader(b, len(out), frameData, flags, cs.id)
		return append(b, out...)
	}); err != nil {
		// The connection broke; the reader ends the stream with its status.
		return io.EOF
	}
	return nil
}

// CloseSend implements kernel.ClientStream: it sends END_STREAM. It is
// idempotent and never blocks on flow control.
func (cs *cstream) CloseSend() error {
	if cs.sendClosed {
		return nil
	}
	cs.sendClosed = true
	if cs.hasEnded() {
		return nil
	}
	cs.s.w.write(func(b []byte) []byte {
		return appendHeader(b, 0, frameData, flagEndStream|flagNoMessage, cs.id)
	})
	return nil
}

// RecvMsg implements kernel.ClientStream.
func (cs *cstream) RecvMsg(m any) error {
	msg, err := cs.flow.take(cs.done, nil)
	if err != nil {
		return err
	}
	n := len(*msg)
	err = cs.codec.Unmarshal(*msg, m) // does not retain the bytes
	putRecvBuf(msg)
	if g := cs.flow.taken(n); g > 0 {
		cs.s.w.writeLater(func(b []byte) []byte { return appendWindowUpdate(b, cs.id, g) })
	}
	if err != nil {
		var se *status.Error
		if !errors.As(err, &se) {
			se = status.Errorf(status.Internal, "decode response of %s: %v", cs.method, err)
		}
		cs.fail(se)
		return se
	}
	return nil
}
