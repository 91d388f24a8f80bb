package native

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// session is the client side of one connection. Calls are multiplexed by
// stream id; one reader goroutine delivers responses to the waiting callers.
type session struct {
	conn     net.Conn
	w        *writer
	limits   kernel.Limits
	endpoint string

	window int64 // the flow-control window granted to each server stream
	maxWin int64 // what that window may grow to

	// From the server's SETTINGS.
	peerMaxMessage uint32
	peerWindow     int64         // the window the server grants each stream
	slots          chan struct{} // one token per stream the server allows

	mu         sync.Mutex
	calls      map[uint32]*pending
	streams    map[uint32]*cstream // streaming calls, until their TRAILERS (or the connection's end)
	sentSchema map[string]string   // method -> the schema fingerprint last sent for it
	abandoned  map[uint32]struct{} // cancelled calls whose slot waits for their TRAILERS; nil once closed
	nextID     uint32
	goneAway   bool
	goAwayLast uint32
	draining   bool // Drain was called: close once the last call ends

	accepting atomic.Bool
	inflight  atomic.Int32
	done      chan struct{}
}

// pending is a call waiting for its response; it is recycled.
type pending struct {
	done       chan struct{} // receives once, when the result is set
	data       *[]byte
	code       status.Code
	msg        string
	refused    bool
	wantHeader bool
	header     metadata.MD
	trailer    metadata.MD
}

var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan struct{}, 1)} }}

func newSession(conn net.Conn, o kernel.SessionOptions, cfg Config) (*session, error) {
	lim := o.Limits.WithDefaults()
	s := &session{conn: conn, w: newWriter(conn), limits: lim, endpoint: o.Endpoint, window: cfg.window(), maxWin: cfg.maxWindow(),
		calls: make(map[uint32]*pending), abandoned: make(map[uint32]struct{}), nextID: 1, done: make(chan struct{}),
		streams: make(map[uint32]*cstream), sentSchema: make(map[string]string)}
	settings := binary.AppendUvarint(nil, settingMaxMessage)
	settings = binary.AppendUvarint(settings, uint64(lim.MaxMessage))
	settings = binary.AppendUvarint(settings, settingStreamWindow)
	settings = binary.AppendUvarint(settings, uint64(s.window))
	if err := s.w.write(func(b []byte) []byte {
		b = append(b, preface[:]...)
		b = appendHeader(b, len(settings), frameSettings, 0, 0)
		return append(b, settings...)
	}); err != nil {
		return nil, fmt.Errorf("protocol.axon: send preface: %w", err)
	}
	br := bufio.NewReaderSize(conn, 32<<10)
	conn.SetReadDeadline(time.Now().Add(lim.HandshakeTimeout))
	var pre [prefaceLen]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil {
		return nil, fmt.Errorf("protocol.axon: read server preface: %w", err)
	}
	if pre != preface {
		return nil, fmt.Errorf("protocol.axon: server preface %q is not Axon version %d", pre[:], version)
	}
	var hdr [headerLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("protocol.axon: read server settings: %w", err)
	}
	h := parseHeader(hdr[:])
	if h.typ != frameSettings || h.length > 1024 {
		return nil, fmt.Errorf("protocol.axon: server sent frame type %d (length %d) before its settings", h.typ, h.length)
	}
	payload := make([]byte, h.length)
	if _, err := io.ReadFull(br, payload); err != nil {
		return nil, fmt.Errorf("protocol.axon: read server settings: %w", err)
	}
	conn.SetReadDeadline(time.Time{})
	maxStreams := uint32(100)
	s.peerMaxMessage = 4 << 20
	s.peerWindow = defaultStreamWindow
	d := decoder{b: payload}
	for len(d.b) > 0 && d.err == nil {
		id, v := d.uvarint(), d.uvarint()
		switch id {
		case settingMaxMessage:
			s.peerMaxMessage = clampUint32(v)
		case settingMaxStreams:
			maxStreams = max(1, min(clampUint32(v), 1<<16))
		case settingStreamWindow:
			s.peerWindow = int64(max(1, min(clampUint32(v), 1<<30)))
		}
	}
	if d.err != nil {
		return nil, fmt.Errorf("protocol.axon: server settings: %w", d.err)
	}
	s.slots = make(chan struct{}, maxStreams)
	s.accepting.Store(true)
	go s.readLoop(br)
	return s, nil
}

// Accepting implements kernel.Session. A session whose connection failed a
// write stops accepting at once, before its reader has noticed, so that the
// client sends the next call elsewhere.
func (s *session) Accepting() bool { return s.accepting.Load() && !s.w.isBroken() }

// InFlight implements kernel.Session.
func (s *session) InFlight() int { return int(s.inflight.Load()) }

// Done implements kernel.Session.
func (s *session) Done() <-chan struct{} { return s.done }

// Close implements kernel.Session.
func (s *session) Close() error {
	s.accepting.Store(false)
	return s.conn.Close()
}

// Invoke implements kernel.Session.
func (s *session) Invoke(ctx context.Context, call *kernel.ClientCall, req, resp any) (rerr error) {
	// Wait for a stream the server allows, rather than be refused.
	select {
	case s.slots <- struct{}{}:
	default:
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return status.FromError(ctx.Err())
		case <-s.done:
			return status.Refused("connection closed")
		}
	}
	// The slot is released when the call ends, or, for a call this side
	// gave up on, when the server's TRAILERS say its handler has ended: the
	// server counts the stream until then.
	release := true
	defer func() {
		if release {
			<-s.slots
		}
	}()

	var timeout uint64
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return status.Errorf(status.DeadlineExceeded, "deadline exceeded before %s was sent", call.Method)
		}
		timeout = uint64(max(left.Microseconds(), 1))
	}

	// Marshal first: the frame header needs the length.
	buf := getBuf(0)
	defer func() { putBuf(buf) }()
	out, err := call.Codec.Marshal(*buf, req)
	if err != nil {
		return status.Errorf(status.Internal, "encode request of %s: %v", call.Method, err)
	}
	*buf = out
	if uint64(len(out)) > uint64(s.peerMaxMessage) {
		return status.Errorf(status.ResourceExhausted, "request message of %d bytes exceeds the server's limit of %d bytes", len(out), s.peerMaxMessage)
	}

	p := pendingPool.Get().(*pending)
	p.wantHeader = call.Header != nil
	s.inflight.Add(1)
	defer s.callDone()

	// The stream id is taken inside the writer's critical section, so ids
	// reach the wire in increasing order, as the server requires.
	var id uint32
	registered, refused, carried := false, false, false
	codec := call.Codec.Name()
	err = s.w.write(func(b []byte) []byte {
		s.mu.Lock()
		if !s.accepting.Load() {
			s.mu.Unlock()
			refused = true
			return b
		}
		id = s.nextID
		s.nextID++
		s.calls[id] = p
		registered = true
		carried = s.schemaDueLocked(call)
		s.mu.Unlock()
		start := len(b)
		b = appendHeader(b, 0, frameHeaders, 0, id)
		b = binary.AppendUvarint(b, timeout)
		b = appendString(b, call.Method)
		b = appendString(b, codec)
		b = appendMD(b, call.Metadata)
		if carried {
			b = appendString(b, call.Schema)
		}
		binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-headerLen))
		b = appendHeader(b, len(out), frameData, flagEndStream, id)
		return append(b, out...)
	})
	if carried {
		// A call that carried the schema and failed before the server
		// read it makes the next call of the method carry it again.
		defer func() {
			if schemaLost(rerr) {
				s.forgetSchema(call.Method, call.Schema)
			}
		}()
	}
	switch {
	case refused:
		s.recycle(p)
		return status.Refused("connection is going away")
	case !registered:
		s.recycle(p)
		return status.Refused("connection closed before the call was sent")
	case err != nil:
		// The connection broke. Do not close it here: what the server
		// sent first (a GOAWAY saying which calls it never ran, or their
		// answers) is still to be read. The reader reads it and then
		// fails what is left; the deadline bounds a peer that went silent.
		s.conn.SetReadDeadline(time.Now().Add(time.Second))
		<-p.done
		return s.result(p, call, resp)
	}

	select {
	case <-p.done:
		return s.result(p, call, resp)
	case <-ctx.Done():
	}
	s.mu.Lock()
	mine := s.calls[id] == p
	if mine {
		delete(s.calls, id)
		if s.abandoned != nil {
			s.abandoned[id] = struct{}{}
			release = false
		}
	}
	s.mu.Unlock()
	if !mine {
		// The response won the race; use it.
		<-p.done
		return s.result(p, call, resp)
	}
	se := status.FromError(ctx.Err())
	s.w.write(func(b []byte) []byte {
		b = appendHeader(b, 1, frameCancel, 0, id)
		return append(b, byte(se.Code()))
	})
	s.recycle(p)
	return se
}

// result turns a delivered response into resp or an error, and recycles p.
func (s *session) result(p *pending, call *kernel.ClientCall, resp any) error {
	defer s.recycle(p)
	if call.Header != nil && p.header != nil {
		*call.Header = p.header
	}
	if call.Trailer != nil && p.trailer != nil {
		*call.Trailer = p.trailer
	}
	if p.code != status.OK {
		if p.refused {
			return status.Refused(p.msg)
		}
		return status.New(p.code, p.msg)
	}
	if p.data == nil {
		return status.Errorf(status.Internal, "server sent no response message for %s", call.Method)
	}
	if err := call.Codec.Unmarshal(*p.data, resp); err != nil {
		// A codec's own status (such as FAILED_PRECONDITION for a schema
		// mismatch) is the call's; anything else is INTERNAL.
		var se *status.Error
		if errors.As(err, &se) {
			return se
		}
		return status.Errorf(status.Internal, "decode response of %s: %v", call.Method, err)
	}
	return nil
}

func (s *session) recycle(p *pending) {
	putBuf(p.data)
	done := p.done
	*p = pending{done: done}
	pendingPool.Put(p)
}

// Drain implements kernel.Session.
func (s *session) Drain() {
	s.mu.Lock()
	s.accepting.Store(false) // under mu: no call registers after this
	s.draining = true
	idle := len(s.calls) == 0 && len(s.streams) == 0
	s.mu.Unlock()
	if idle && s.inflight.Load() == 0 {
		s.conn.Close()
	}
}

// callDone closes a session that went away or is draining once its last
// call ends.
func (s *session) callDone() {
	if s.inflight.Add(-1) == 0 && !s.accepting.Load() {
		s.mu.Lock()
		gone := (s.goneAway || s.draining) && len(s.calls) == 0 && len(s.streams) == 0
		s.mu.Unlock()
		if gone {
			s.conn.Close()
		}
	}
}

// deliver completes a pending call; the caller has removed it from calls.
func deliver(p *pending) {
	p.done <- struct{}{}
}

func (s *session) readLoop(br *bufio.Reader) {
	err := s.read(br)
	s.accepting.Store(false)
	s.conn.Close()
	s.w.fail(errConnClosed)
	s.mu.Lock()
	calls := s.calls
	s.calls = map[uint32]*pending{}
	streams := s.streams
	s.streams = map[uint32]*cstream{}
	abandoned := len(s.abandoned)
	s.abandoned = nil
	refusedAbove := uint32(1<<32 - 1)
	if s.goneAway {
		refusedAbove = s.goAwayLast
	}
	s.mu.Unlock()
	msg := fmt.Sprintf("connection to %s closed", s.endpoint)
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		msg += ": " + err.Error()
	}
	for id, p := range calls {
		p.code, p.msg = status.Unavailable, msg
		// Calls above the go-away line were never run: retrying is safe.
		p.refused = id > refusedAbove
		deliver(p)
	}
	for id, cs := range streams {
		se := status.New(status.Unavailable, msg)
		if id > refusedAbove {
			se = status.Refused(msg)
		}
		cs.finish(se, nil, false)
		s.release(cs)
	}
	for range abandoned {
		<-s.slots
	}
	close(s.done)
}

func (s *session) read(br *bufio.Reader) error {
	var hdr [headerLen]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return err
		}
		h := parseHeader(hdr[:])
		switch h.typ {
		case frameData:
			s.mu.Lock()
			p := s.calls[h.stream]
			want := p != nil && p.data == nil
			var cs *cstream
			if p == nil {
				cs = s.streams[h.stream]
			}
			s.mu.Unlock()
			if cs != nil {
				if err := s.onStreamData(br, h, cs); err != nil {
					return err
				}
				continue
			}
			if !want {
				if err := discard(br, int64(h.length)); err != nil {
					return err
				}
				continue
			}
			if h.length > uint32(s.limits.MaxMessage) {
				if err := discard(br, int64(h.length)); err != nil {
					return err
				}
				s.fail(h.stream, status.ResourceExhausted, fmt.Sprintf("response message of %d bytes exceeds the limit of %d bytes", h.length, s.limits.MaxMessage))
				continue
			}
			buf := getBuf(int(h.length))
			if _, err := io.ReadFull(br, *buf); err != nil {
				putBuf(buf)
				return err
			}
			// The caller may have given up meanwhile and recycled p: hand
			// the message over only while p still waits for this stream.
			s.mu.Lock()
			if s.calls[h.stream] == p {
				p.data, buf = buf, nil
			}
			s.mu.Unlock()
			putBuf(buf)
		case frameHeaders, frameTrailers, frameGoAway:
			if h.length > uint32(s.limits.MaxMetadata)+1024 {
				return fmt.Errorf("frame type %d of %d bytes exceeds the header limit of %d bytes", h.typ, h.length, s.limits.MaxMetadata)
			}
			payload := getBuf(int(h.length))
			if _, err := io.ReadFull(br, *payload); err != nil {
				putBuf(payload)
				return err
			}
			err := s.onControl(h, *payload)
			putBuf(payload)
			if err != nil {
				return err
			}
		case framePing:
			if _, err := readPing(br, h, s.w, 0); err != nil {
				return err
			}
		case frameWindow:
			inc, err := readWindowUpdate(br, h)
			if err != nil {
				return err
			}
			s.mu.Lock()
			cs := s.streams[h.stream]
			s.mu.Unlock()
			if cs != nil {
				cs.flow.grant(inc)
			}
		default:
			if err := discard(br, int64(h.length)); err != nil {
				return err
			}
		}
	}
}

func (s *session) onControl(h frameHeader, payload []byte) error {
	d := decoder{b: payload}
	switch h.typ {
	case frameHeaders:
		md := d.md()
		s.mu.Lock()
		p := s.calls[h.stream]
		if p != nil && p.wantHeader {
			p.header = md
		}
		var cs *cstream
		if p == nil {
			cs = s.streams[h.stream]
		}
		s.mu.Unlock()
		if cs != nil {
			cs.setHeader(md)
		}
	case frameTrailers:
		code := d.uvarint()
		msg := d.bytes()
		md := d.md()
		if d.err != nil {
			return fmt.Errorf("stream %d: trailers: %w", h.stream, d.err)
		}
		s.mu.Lock()
		p := s.calls[h.stream]
		delete(s.calls, h.stream)
		_, abandoned := s.abandoned[h.stream]
		delete(s.abandoned, h.stream)
		var cs *cstream
		if p == nil {
			if cs = s.streams[h.stream]; cs != nil {
				delete(s.streams, h.stream)
			}
		}
		s.mu.Unlock()
		if abandoned {
			<-s.slots
		}
		if cs != nil {
			var se *status.Error
			switch {
			case h.flags&flagRefused != 0:
				se = status.Refused(string(msg))
			case status.Code(code) != status.OK:
				se = status.New(status.Code(code), string(msg))
			}
			cs.finish(se, md, true)
			s.release(cs)
		}
		if p != nil {
			p.code, p.msg, p.trailer = status.Code(code), string(msg), md
			p.refused = h.flags&flagRefused != 0
			deliver(p)
		}
	case frameGoAway:
		last := clampUint32(d.uvarint())
		if d.err != nil {
			return fmt.Errorf("goaway: %w", d.err)
		}
		s.accepting.Store(false)
		s.mu.Lock()
		s.goneAway, s.goAwayLast = true, last
		var refused []*pending
		for id, p := range s.calls {
			if id > last {
				refused = append(refused, p)
				delete(s.calls, id)
			}
		}
		var refusedStreams []*cstream
		for id, cs := range s.streams {
			if id > last {
				refusedStreams = append(refusedStreams, cs)
				delete(s.streams, id)
			}
		}
		empty := len(s.calls) == 0 && len(s.streams) == 0
		s.mu.Unlock()
		for _, p := range refused {
			p.code, p.msg, p.refused = status.Unavailable, "server went away before the call", true
			deliver(p)
		}
		for _, cs := range refusedStreams {
			cs.finish(status.Refused("server went away before the call"), nil, false)
			s.release(cs)
		}
		if empty && s.inflight.Load() == 0 {
			s.conn.Close()
		}
	}
	return nil
}

// fail completes stream id with an error and tells the server to stop it.
func (s *session) fail(id uint32, code status.Code, msg string) {
	s.mu.Lock()
	p := s.calls[id]
	delete(s.calls, id)
	s.mu.Unlock()
	if p == nil {
		return
	}
	s.w.write(func(b []byte) []byte {
		b = appendHeader(b, 1, frameCancel, 0, id)
		return append(b, byte(code))
	})
	p.code, p.msg = code, msg
	deliver(p)
}
