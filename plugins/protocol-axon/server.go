package native

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// server is the native protocol's server side for one generation. Calls run
// on a pool of reused goroutines, so a call costs no fresh goroutine stack.
type server struct {
	d       *kernel.Dispatcher
	limits  kernel.Limits
	budget  *kernel.Budget // process-wide, for request message bytes
	window  int64          // the flow-control window granted to each client stream
	maxWin  int64          // what that window may grow to
	workers workerPool

	mu       sync.Mutex
	conns    map[*serverConn]struct{}
	shutdown bool
}

func newServer(d *kernel.Dispatcher, cfg Config) *server {
	return &server{d: d, limits: d.Limits(), budget: d.Budget(), window: cfg.window(), maxWin: cfg.maxWindow(), conns: make(map[*serverConn]struct{}),
		workers: workerPool{idle: cfg.WorkerIdle, work: make(chan *sstream), quit: make(chan struct{})}}
}

// serverConn is one accepted connection.
type serverConn struct {
	srv    *server
	conn   net.Conn
	w      *writer
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	mu        sync.Mutex
	streams   map[uint32]*sstream
	lastID    uint32
	draining  bool          // goAway began: the first GOAWAY and the drain PING are sent
	ended     bool          // the reader is done: idle is closed as soon as it exists
	drainAck  chan struct{} // closed when the peer answers the drain PING
	goingAway bool          // the final GOAWAY is sent: new calls are refused
	answering int           // streams forgotten whose last frames are being written
	idle      chan struct{} // closed when going away and no stream is left
	awayCode  status.Code   // what the final GOAWAY says; set with draining
	awayMsg   string
	opened    uint64 // streams registered so far (for the idle check)
	// promised is what running unary calls will add to the output: the
	// request bytes of each call from its DATA until its answer is queued
	// (c.end), when the writer's backlog counts the answer. New calls are refused while
	// it and the backlog are over max_conn_buffered (onData), so that
	// what handlers hold on a connection that does not read stays bounded.
	promised int64

	// Housekeeping (housekeep, every period; its state is under mu): calls
	// whose request is late are reset, an idle connection goes away.
	hk        *time.Timer
	period    time.Duration
	tick      atomic.Uint32 // housekeeping rounds so far; a call records it at HEADERS
	reading   atomic.Uint32 // 1 + the tick of the call whose request payload the reader is reading; 0: none
	reqTicks  uint32        // rounds after which a call's request is late
	idleTicks int           // quiet rounds after which the connection is idle
	quiet     int           // consecutive rounds without a call
	hkOpened  uint64        // opened at the last round
	age       *time.Timer   // max_connection_age, if set

	codecName string // the last codec name seen, to avoid a string per call
	codec     kernel.Codec

	stats kernel.ConnStats               // for the live view (liveview.go)
	tls   atomic.Pointer[kernel.TLSInfo] // set once the TLS handshake is known complete

	// Owned by the reader goroutine.
	ctl ctlBucket // control frames' budget
	// resetCredit is how many calls the reader handed to workers, up to
	// control_frame_rate, that a cancel before their handler ran may use
	// instead of the control budget: a client whose short deadlines cancel
	// calls it sent whole is not a rapid-reset attacker. Reader-owned.
	resetCredit    float64
	gotSettings    bool   // the client's first SETTINGS arrived (the handshake is complete)
	refusedID      uint32 // the last stream the reader refused: its DATA frame is not charged
	hardBacklog    int    // the output backlog over which the reader's own frames drop the connection
	peerMaxMessage uint32 // from the client's SETTINGS
	peerWindow     int64  // the window the client grants each stream
	// schemas holds the schema fingerprint the client sent per method. It
	// is keyed by method, not by route: routes belong to a configuration
	// generation, and a connection may outlive several.
	schemas map[*kernel.MethodDesc]string
}

// sstream is one call on a server connection; it is recycled after the call.
type sstream struct {
	c       *serverConn
	id      uint32
	route   *kernel.Route
	codec   kernel.Codec
	timeout time.Duration
	md      metadata.MD
	req     *[]byte // request message bytes, owned until decoded
	ctx     context.Context
	cancel  context.CancelFunc // set by the reader goroutine; read under c.mu
	started bool               // a worker owns the stream; guarded by c.mu
	begun   bool               // counted by c.stats.Begin; owned by the worker
	running atomic.Bool        // the handler has started (read by the reader for CANCEL)
	epoch   uint32             // c.tick at HEADERS
	held    int64              // what the call counts in c.promised; under c.mu
	call    kernel.ServerCall
	ss      *srvStream // a streaming call's state; nil for unary calls. Set under c.mu
}

var sstreamPool = sync.Pool{New: func() any { return new(sstream) }}

// ServeConn implements kernel.ServerConn.
func (s *server) ServeConn(conn net.Conn) {
	c := &serverConn{srv: s, conn: conn, w: newWriter(conn), streams: make(map[uint32]*sstream),
		peerMaxMessage: 4 << 20, peerWindow: defaultStreamWindow}
	lim := s.limits
	c.stats.Open(time.Now())
	c.w.stats = &c.stats
	c.w.limit, c.w.timeout, c.w.closeOnErr = int(lim.MaxConnBuffered), lim.WriteTimeout, true
	c.hardBacklog = int(lim.MaxConnBuffered)
	c.w.resumable = kernel.TLSOf(conn) == nil
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer c.cancel()
	defer func() { closeSoon(conn, lim.WriteTimeout) }()

	br := bufio.NewReaderSize(countingReader{conn: conn, stats: &c.stats}, 32<<10)
	// The handshake, the preface and the client's SETTINGS (onSettings
	// lifts the deadline), must complete within handshake_timeout as a
	// whole, however slowly the bytes come.
	conn.SetReadDeadline(time.Now().Add(lim.HandshakeTimeout))
	var pre [prefaceLen]byte
	if _, err := io.ReadFull(br, pre[:]); err != nil || pre != preface {
		// Not an Axon peer, or an unsupported version: say nothing more.
		return
	}
	settings := binary.AppendUvarint(nil, settingMaxMessage)
	settings = binary.AppendUvarint(settings, uint64(s.limits.MaxMessage))
	settings = binary.AppendUvarint(settings, settingMaxStreams)
	settings = binary.AppendUvarint(settings, uint64(s.limits.MaxConcurrentStreams))
	settings = binary.AppendUvarint(settings, settingMaxHeaderSize)
	settings = binary.AppendUvarint(settings, uint64(s.limits.MaxMetadata))
	settings = binary.AppendUvarint(settings, settingStreamWindow)
	settings = binary.AppendUvarint(settings, uint64(s.window))
	if err := c.w.write(func(b []byte) []byte {
		b = append(b, preface[:]...)
		b = appendHeader(b, len(settings), frameSettings, 0, 0)
		return append(b, settings...)
	}); err != nil {
		return
	}
	c.learnTLS()
	c.ctl.init(lim.ControlFrameRate)
	c.startTimers()
	defer c.stopTimers()

	s.mu.Lock()
	shut := s.shutdown
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	if shut {
		// Accepted in the moment before a swap: send the peer elsewhere
		// at once (it has opened nothing it cannot retry), and close once
		// it had time to read.
		c.goAway(false, status.Unavailable, "server is draining")
		go func() {
			select {
			case <-c.idle:
			case <-time.After(s.limits.HandshakeTimeout):
			}
			c.w.waitIdle()
			closeSoon(conn, s.limits.WriteTimeout)
		}()
	}
	err := c.readLoop(br)
	if errors.Is(err, errCalm) {
		s.d.Penalize(conn.RemoteAddr())
		c.calm(br)
	}
	if errors.Is(err, errBacklog) {
		abort(conn) // the peer does not read: it would not read a FIN either
	}
	c.w.fail(errConnClosed)
	c.mu.Lock()
	// A drain (Shutdown, an idle or old connection sent away) waiting for
	// this connection stops waiting: it is over.
	c.ended = true
	c.signalIdleLocked()
	for _, st := range c.streams {
		if st.cancel != nil {
			st.cancel()
		}
	}
	c.mu.Unlock()
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.d.Logger().Debug("connection closed", "peer", conn.RemoteAddr().String(), "err", err)
	}
}

var errConnClosed = errors.New("connection closed")

func (c *serverConn) readLoop(br *bufio.Reader) error {
	var hdr [headerLen]byte
	lim := c.srv.limits
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return err
		}
		h := parseHeader(hdr[:])
		switch h.typ {
		case frameHeaders:
			if h.length > uint32(lim.MaxMetadata) {
				// The stream is refused, but its id is used up all the same.
				c.mu.Lock()
				ok := h.stream > c.lastID
				if ok {
					c.lastID = h.stream
				}
				c.mu.Unlock()
				if !ok {
					return fmt.Errorf("stream id %d is not above the last one", h.stream)
				}
				c.refusedID = h.stream
				if err := c.reject(h.stream, status.Errorf(status.ResourceExhausted, "header block of %d bytes exceeds the limit of %d bytes", h.length, lim.MaxMetadata), false); err != nil {
					return err
				}
				if err := discard(br, int64(h.length)); err != nil {
					return err
				}
				continue
			}
			if err := c.onHeaders(br, h); err != nil {
				return err
			}
		case frameData:
			if err := c.onData(br, h); err != nil {
				return err
			}
		case frameCancel:
			if err := discard(br, int64(h.length)); err != nil {
				return err
			}
			var cancel context.CancelFunc
			var pending *sstream // a unary call still waiting for its message
			c.mu.Lock()
			st := c.streams[h.stream]
			if st != nil {
				cancel = st.cancel
				if !st.started {
					delete(c.streams, h.stream)
					st.started = true
					pending = st
				}
			}
			// Only a CANCEL that stops a running handler does work. One of a
			// stream never opened, or of a call whose handler has not
			// started (rapid reset), is charged as a control frame; one of
			// a call that has ended a sixteenth (a client's deadline races
			// with the server's answer).
			var charge float64
			switch {
			case st != nil:
				if !st.running.Load() {
					charge = 1
					if c.resetCredit >= 1 {
						c.resetCredit--
						charge = 0
					}
				}
			case h.stream > c.lastID:
				charge = 1
			default:
				charge = 1.0 / 16
			}
			c.mu.Unlock()
			if cancel != nil {
				cancel()
			}
			if pending != nil {
				c.finish(pending, status.New(status.Canceled, "protocol.axon: the client cancelled the call"))
			}
			if charge > 0 {
				if err := c.charge(charge); err != nil {
					return err
				}
			}
		case framePing:
			p, err := readPing(br, h, c.w, c.hardBacklog)
			if err != nil {
				return err
			}
			if h.flags&flagAck != 0 && p == drainPing {
				c.drainAcked()
			} else if err := c.charge(1); err != nil {
				return err
			}
		case frameWindow:
			inc, err := readWindowUpdate(br, h)
			if err != nil {
				return err
			}
			c.mu.Lock()
			var ss *srvStream
			if st := c.streams[h.stream]; st != nil {
				ss = st.ss
			}
			c.mu.Unlock()
			if ss != nil {
				ss.flow.grant(inc)
			} else if err := c.charge(1); err != nil {
				return err
			}
		case frameSettings:
			if err := c.onSettings(br, h); err != nil {
				return err
			}
		default:
			// GOAWAY from a client and unknown types are skipped, so later
			// versions can add frames; they are charged as control frames.
			if err := c.charge(1); err != nil {
				return err
			}
			if err := discard(br, int64(h.length)); err != nil {
				return err
			}
		}
	}
}

// onSettings reads the client's SETTINGS: its message limit and stream
// window apply to what this side sends.
func (c *serverConn) onSettings(br *bufio.Reader, h frameHeader) error {
	if h.length > 1024 {
		return fmt.Errorf("settings of %d bytes, want at most 1024", h.length)
	}
	if !c.gotSettings {
		c.gotSettings = true
		c.conn.SetReadDeadline(time.Time{}) // the handshake is complete
	} else if err := c.charge(1); err != nil {
		return err
	}
	p := make([]byte, h.length)
	if _, err := io.ReadFull(br, p); err != nil {
		return err
	}
	d := decoder{b: p}
	for len(d.b) > 0 && d.err == nil {
		id, v := d.uvarint(), d.uvarint()
		switch id {
		case settingMaxMessage:
			c.peerMaxMessage = clampUint32(v)
		case settingStreamWindow:
			c.peerWindow = int64(max(1, min(clampUint32(v), 1<<30)))
		}
	}
	if d.err != nil {
		return fmt.Errorf("settings: %w", d.err)
	}
	return nil
}

// onHeaders opens a stream.
func (c *serverConn) onHeaders(br *bufio.Reader, h frameHeader) error {
	st := sstreamPool.Get().(*sstream)
	st.c, st.id = c, h.stream
	buf := getBuf(int(h.length))
	defer putBuf(buf)
	epoch := c.tick.Load()
	c.reading.Store(epoch + 1)
	if _, err := io.ReadFull(br, *buf); err != nil {
		sstreamPool.Put(st)
		return err
	}
	c.reading.Store(0)
	d := decoder{b: *buf}
	timeout := d.uvarint()
	method := d.bytes()
	codec := d.bytes()
	st.md = d.md()
	var schema []byte
	if len(d.b) > 0 {
		schema = d.bytes() // optional: absent from calls that repeat the method's schema
	}
	if d.err != nil {
		*st = sstream{}
		sstreamPool.Put(st)
		return fmt.Errorf("stream %d: headers: %w", h.stream, d.err)
	}
	st.timeout = time.Duration(min(timeout, uint64(1<<62)/1000)) * time.Microsecond
	// Remember the schema even if this call is refused, so that later calls
	// of the method, which do not repeat it, are checked against it. Only
	// known methods are remembered, which bounds the map.
	st.route = c.srv.d.Route(string(method))
	if len(schema) > 0 && st.route != nil {
		if c.schemas == nil {
			c.schemas = make(map[*kernel.MethodDesc]string)
		}
		if c.schemas[st.route.Method] != string(schema) {
			c.schemas[st.route.Method] = string(schema)
		}
	}

	// The call is checked before it is registered, so that housekeep,
	// which may reset a registered call, never meets one the reader is
	// still setting up.
	var err error
	if st.route == nil {
		err = kernel.UnknownMethod(string(method))
	} else if st.codec, err = c.codecFor(codec); err == nil {
		// The schema is checked before any message of the call is decoded.
		if _, ok := st.codec.(kernel.SchemaCodec); ok {
			err = c.srv.d.CheckSchema(st.route, st.codec, c.schemas[st.route.Method])
		}
	}
	stream := err == nil && (h.flags&flagStream != 0 || st.route.Method.IsStreaming())

	c.mu.Lock()
	if h.stream == 0 || h.stream <= c.lastID {
		last := c.lastID
		c.mu.Unlock()
		*st = sstream{}
		sstreamPool.Put(st)
		return fmt.Errorf("stream id %d is not above the last one (%d)", h.stream, last)
	}
	c.lastID = h.stream
	var refuse string
	backlogged := false
	switch {
	case c.goingAway:
		refuse = "server is going away"
	case len(c.streams) >= c.srv.limits.MaxConcurrentStreams:
		refuse = fmt.Sprintf("too many concurrent calls on this connection (limit %d)", c.srv.limits.MaxConcurrentStreams)
	case c.w.backlog() > int64(c.srv.limits.MaxConnBuffered):
		refuse = fmt.Sprintf("the connection's unsent output is over its limit of %d bytes (max_conn_buffered): the client is not reading", c.srv.limits.MaxConnBuffered)
		backlogged = true
	}
	if refuse == "" && err == nil {
		// A streaming call's handler starts now; a unary call waits for
		// its message, which housekeep makes it wait for no longer than
		// request_timeout.
		st.epoch, st.started = epoch, stream
		c.streams[h.stream] = st
		c.opened++
	}
	c.mu.Unlock()
	if refuse != "" {
		*st = sstream{}
		sstreamPool.Put(st)
		c.refusedID = h.stream
		if err := c.reject(h.stream, status.Refused(refuse), true); err != nil {
			return err
		}
		if backlogged {
			return c.waitDrain()
		}
		return nil
	}
	if err != nil {
		c.refusedID = h.stream
		c.finish(st, err)
		return nil
	}
	if stream {
		c.startStream(st, h.flags&flagStream != 0)
	}
	return nil
}

func (c *serverConn) codecFor(name []byte) (kernel.Codec, error) {
	if c.codec != nil && string(name) == c.codecName {
		return c.codec, nil
	}
	cd, err := c.srv.d.Codec(string(name))
	if err == nil {
		c.codec, c.codecName = cd, string(name)
	}
	return cd, err
}

// onData receives a request message; a unary call starts when it arrives.
// The reader goroutine owns a stream from its HEADERS until it hands it to a
// worker here; later DATA frames on a started stream are skipped.
func (c *serverConn) onData(br *bufio.Reader, h frameHeader) error {
	c.mu.Lock()
	st := c.streams[h.stream]
	ok := st != nil && !st.started
	over := false
	if ok {
		st.started = true
		// With other calls running, refuse this one if what they will
		// answer, the output not yet sent and this message would exceed
		// max_conn_buffered. (The backlog is read only then: a lone
		// call pays nothing for this.)
		over = c.promised > 0 && c.promised+int64(h.length)+c.w.backlog() > int64(c.srv.limits.MaxConnBuffered)
	}
	var ss *srvStream
	if st != nil {
		ss = st.ss
	}
	last := c.lastID
	c.mu.Unlock()
	if ss != nil {
		return c.onStreamData(br, h, ss)
	}
	if !ok {
		// Cancelled, finished, already started or unknown: skip its bytes.
		// DATA for a stream never opened is charged as a control frame;
		// for a stream that ended (a client's frames may be in flight when
		// its call ends) a sixteenth; the message of the call the reader
		// just refused is free.
		switch {
		case st != nil || h.stream == c.refusedID:
		case h.stream > last:
			if err := c.charge(1); err != nil {
				return err
			}
		default:
			if err := c.charge(1.0 / 16); err != nil {
				return err
			}
		}
		return discard(br, int64(h.length))
	}
	if over {
		// Refused (retryable) like a call over the backlog at HEADERS; its
		// bytes are skipped.
		c.refusedID = h.stream
		se := status.Refused(fmt.Sprintf("the connection's unsent and promised output is over its limit of %d bytes (max_conn_buffered): the client is not reading fast enough", c.srv.limits.MaxConnBuffered))
		code, msg := se.Code(), se.Message()
		c.end(st, code, func(b []byte) []byte {
			return appendTrailers(b, st.id, code, msg, nil, flagRefused)
		})
		return discard(br, int64(h.length))
	}
	if h.length > uint32(c.srv.limits.MaxMessage) {
		// Answer first, then skip the bytes: nothing is allocated for them.
		c.finish(st, status.Errorf(status.ResourceExhausted, "request message of %d bytes exceeds the limit of %d bytes", h.length, c.srv.limits.MaxMessage))
		return discard(br, int64(h.length))
	}
	// The message is charged to the process-wide budget before it is
	// read; over budget, the call fails and its bytes are skipped.
	if !c.srv.budget.Acquire(int64(h.length)) {
		c.finish(st, status.Errorf(status.ResourceExhausted, "protocol.axon: the server is over its budget of buffered bytes (max_buffered %d)", c.srv.limits.MaxBuffered))
		return discard(br, int64(h.length))
	}
	st.req = getBuf(int(h.length))
	c.reading.Store(st.epoch + 1)
	if _, err := io.ReadFull(br, *st.req); err != nil {
		c.srv.budget.Release(int64(h.length))
		putBuf(st.req)
		st.req = nil
		return err
	}
	c.reading.Store(0)
	if h.flags&flagEndStream == 0 {
		c.finish(st, status.New(status.Internal, "a unary request must end its stream"))
		return nil
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if st.timeout > 0 {
		ctx, cancel = context.WithTimeout(c.ctx, st.timeout)
	} else {
		ctx, cancel = context.WithCancel(c.ctx)
	}
	c.mu.Lock()
	st.ctx, st.cancel = ctx, cancel
	st.held = int64(h.length)
	c.promised += st.held
	c.mu.Unlock()
	c.earnResetCredit()
	c.srv.workers.run(st)
	return nil
}

// handle runs a call on a worker goroutine.
func (st *sstream) handle() {
	if st.ss != nil {
		st.handleStream()
		return
	}
	c := st.c
	ctx := st.ctx
	st.call = kernel.ServerCall{Method: st.route.Method, Protocol: "axon", Peer: c.conn.RemoteAddr(), PeerIdentity: c.peerIdentity(), TLS: c.srv.d.TLS()}
	ctx = kernel.NewCallContext(ctx, &st.call)
	if st.md != nil {
		ctx = metadata.NewIncomingContext(ctx, st.md)
	}
	req := st.route.Method.NewRequest()
	n := len(*st.req)
	err := st.codec.Unmarshal(*st.req, req)
	putBuf(st.req)
	st.req = nil
	c.srv.budget.Release(int64(n))
	if err != nil {
		// A codec's own status (such as FAILED_PRECONDITION for a schema
		// mismatch) is the call's; anything else is INTERNAL.
		var se *status.Error
		if !errors.As(err, &se) {
			se = status.Errorf(status.Internal, "decode request of %s: %v", st.route.Method.FullName, err)
		}
		c.finish(st, se)
		return
	}
	c.stats.Begin()
	st.begun = true
	st.running.Store(true)
	resp, err := c.srv.d.HandleUnary(ctx, st.route, req)
	if err == nil && ctx.Err() != nil {
		// The deadline passed or the client cancelled: the result is moot.
		err = ctx.Err()
	}
	if err != nil {
		c.finish(st, err)
		return
	}
	c.respond(st, resp)
}

// respond sends a successful response and ends the stream.
func (c *serverConn) respond(st *sstream, resp any) {
	msg := getBuf(0)
	out, err := st.codec.Marshal(*msg, resp)
	if err != nil {
		putBuf(msg)
		c.finish(st, status.Errorf(status.Internal, "encode response of %s: %v", st.route.Method.FullName, err))
		return
	}
	*msg = out
	c.end(st, status.OK, func(b []byte) []byte {
		b = appendHeader(b, len(out), frameData, 0, st.id)
		b = append(b, out...)
		return appendTrailers(b, st.id, status.OK, "", st.call.Trailer, 0)
	})
	putBuf(msg)
}

// finish ends the stream with err's status (OK for nil).
func (c *serverConn) finish(st *sstream, err error) {
	code, msg := status.OK, ""
	if se := status.FromError(err); se != nil {
		code, msg = se.Code(), se.Message()
	}
	c.end(st, code, func(b []byte) []byte {
		return appendTrailers(b, st.id, code, msg, st.call.Trailer, 0)
	})
}

// end writes a stream's last frames (after any header metadata), forgets the
// stream and recycles it; code is the status they carry. The stream leaves
// the connection's count, and the live view's calls in flight, before its
// answer is written, so a client that reuses its slot at once is not
// refused; a drain is told the connection is idle only after the write.
func (c *serverConn) end(st *sstream, code status.Code, frames func([]byte) []byte) {
	if st.begun {
		c.stats.End(code)
	} else {
		c.stats.Finish(code)
	}
	c.mu.Lock()
	if c.streams[st.id] == st {
		delete(c.streams, st.id)
	}
	c.answering++
	cancel := st.cancel
	// The answer is about to join the writer's backlog, which counts it
	// from then on. Taken off the promise before the write, not after: a
	// peer that reads the answer and calls again at once must not find
	// it counted still (for a moment it is counted by neither, which lets
	// at most one more call in).
	c.promised -= st.held
	st.held = 0
	c.mu.Unlock()
	hmd := st.call.Header
	ss := st.ss
	if ss != nil && ss.headerSent {
		hmd = nil
	}
	c.w.write(func(b []byte) []byte {
		if len(hmd) > 0 {
			start := len(b)
			b = appendHeader(b, 0, frameHeaders, 0, st.id)
			b = appendMD(b, hmd)
			binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-headerLen))
		}
		return frames(b)
	})
	c.mu.Lock()
	c.answering--
	idle := c.goingAway && len(c.streams) == 0 && c.answering == 0
	c.mu.Unlock()
	if idle {
		c.signalIdle()
	}
	if cancel != nil {
		cancel()
	}
	if ss != nil {
		// A streaming call's state is not recycled: the reader may still
		// hold it for a frame it is reading. Drop what was never taken.
		ss.flow.end(errStreamEnded, false)
		return
	}
	if st.req != nil {
		c.srv.budget.Release(int64(len(*st.req)))
		putBuf(st.req)
	}
	*st = sstream{}
	sstreamPool.Put(st)
}

// reject answers a stream that was never opened; the reader calls it. When
// the peer leaves so much output unread that even this small answer cannot
// be queued (see writer.tryWrite), it returns errBacklog: the reader then
// drops the connection rather than buffer refusals without bound.
func (c *serverConn) reject(id uint32, se *status.Error, refused bool) error {
	c.stats.Finish(se.Code())
	var flags byte
	if refused {
		flags = flagRefused
	}
	err := c.w.tryWrite(func(b []byte) []byte { return appendTrailers(b, id, se.Code(), se.Message(), nil, flags) }, c.hardBacklog)
	if errors.Is(err, errBacklog) {
		return err
	}
	return nil
}

// waitDrain is the reader's answer to a peer that leaves its output over
// max_conn_buffered and goes on calling: it stops reading (the peer's
// writes then wait in TCP) until the backlog is back under the limit.
// Still over it after write_timeout, the peer is not reading: errBacklog,
// and the reader drops the connection.
func (c *serverConn) waitDrain() error {
	if c.w.waitDrain(int(c.srv.limits.MaxConnBuffered), c.srv.limits.WriteTimeout) {
		return nil
	}
	if c.w.isBroken() {
		return errConnClosed
	}
	c.srv.d.Logger().Debug("output over max_conn_buffered for write_timeout: closing the connection",
		"peer", c.conn.RemoteAddr().String(), "write_timeout", c.srv.limits.WriteTimeout)
	return errBacklog
}

func appendTrailers(b []byte, id uint32, code status.Code, msg string, md metadata.MD, flags byte) []byte {
	start := len(b)
	b = appendHeader(b, 0, frameTrailers, flags, id)
	b = binary.AppendUvarint(b, uint64(code))
	b = appendString(b, msg)
	b = appendMD(b, md)
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-headerLen))
	return b
}

// drainPing is the payload of the PING that goAway sends.
var drainPing = [8]byte{'a', 'x', 'o', 'n', 'd', 'r', 'a', 'i'}

// drainPingWait bounds how long goAway waits for the peer to answer its
// PING before it refuses new calls anyway.
const drainPingWait = time.Second

// goAway drains the connection in two steps, as HTTP/2's graceful shutdown
// does. First a GOAWAY that refuses nothing (its last stream id is the
// largest possible), so the peer opens no new calls here, and a PING. Calls
// the peer opened before it read that GOAWAY are still on their way, and
// are served. Once the peer answers the PING (it has read the GOAWAY, and
// sent everything it opened before), or after drainPingWait, or when the
// connection ends, the final GOAWAY names the last call served and later
// ones are refused. So a peer that drains loses no call to the race with
// the server's GOAWAY. Without twoStep only the final GOAWAY is sent, at
// once. Idempotent.
// code and msg are what the final GOAWAY says.
func (c *serverConn) goAway(twoStep bool, code status.Code, msg string) {
	c.mu.Lock()
	if c.draining {
		c.mu.Unlock()
		return
	}
	c.draining = true
	c.awayCode, c.awayMsg = code, msg
	c.idle = newIdle(c.ended)
	c.drainAck = make(chan struct{})
	ack := c.drainAck
	c.mu.Unlock()
	if !twoStep {
		c.finalGoAway()
		return
	}
	c.w.write(func(b []byte) []byte {
		b = appendGoAway(b, math.MaxUint32, code, msg)
		return append(appendHeader(b, 8, framePing, 0, 0), drainPing[:]...)
	})
	go func() {
		t := time.NewTimer(drainPingWait)
		defer t.Stop()
		select {
		case <-ack:
		case <-t.C:
		case <-c.ctx.Done():
		}
		c.finalGoAway()
	}()
}

// drainAcked records the peer's answer to the drain PING.
func (c *serverConn) drainAcked() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.drainAck != nil {
		select {
		case <-c.drainAck:
		default:
			close(c.drainAck)
		}
	}
}

// finalGoAway refuses new calls and tells the peer the last one served.
func (c *serverConn) finalGoAway() {
	c.mu.Lock()
	c.goingAway = true
	last := c.lastID
	code, msg := c.awayCode, c.awayMsg
	empty := len(c.streams) == 0 && c.answering == 0
	c.mu.Unlock()
	c.w.write(func(b []byte) []byte { return appendGoAway(b, last, code, msg) })
	if empty {
		c.signalIdle()
	}
}

// appendGoAway appends a GOAWAY naming last as the last stream served.
func appendGoAway(b []byte, last uint32, code status.Code, msg string) []byte {
	start := len(b)
	b = appendHeader(b, 0, frameGoAway, 0, 0)
	b = binary.AppendUvarint(b, uint64(last))
	b = binary.AppendUvarint(b, uint64(code))
	b = appendString(b, msg)
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-headerLen))
	return b
}

func (c *serverConn) signalIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.signalIdleLocked()
}

func (c *serverConn) signalIdleLocked() {
	if c.idle == nil {
		return
	}
	select {
	case <-c.idle:
	default:
		close(c.idle)
	}
}

// newIdle returns a connection's idle channel, closed already if its reader
// is done (ended): nothing will close it later.
func newIdle(ended bool) chan struct{} {
	ch := make(chan struct{})
	if ended {
		close(ch)
	}
	return ch
}

// Shutdown implements kernel.ServerConn.
func (s *server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway(true, status.Unavailable, "server is draining")
	}
	var err error
	for _, c := range conns {
		select {
		case <-c.idle:
		case <-ctx.Done():
			c.mu.Lock()
			n := len(c.streams)
			c.mu.Unlock()
			if n > 0 {
				err = fmt.Errorf("protocol.axon: drain: %d calls still running on %s: %w", n, c.conn.RemoteAddr(), ctx.Err())
			}
		}
	}
	// Each connection's last frames are written and taken by its peer, or
	// it is reset, within write_timeout, all at once.
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.w.waitIdle()
			c.cancel()
			closeSoon(c.conn, s.limits.WriteTimeout)
		})
	}
	wg.Wait()
	s.workers.stop()
	return err
}

// workerPool runs calls on goroutines that are reused across calls, so
// their stacks, once grown, stay grown. An idle worker exits after idle.
type workerPool struct {
	idle time.Duration
	work chan *sstream
	quit chan struct{} // closed by stop
	once sync.Once
}

func (p *workerPool) run(st *sstream) {
	select {
	case p.work <- st:
	default:
		go p.worker(st)
	}
}

func (p *workerPool) worker(st *sstream) {
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		st.handle()
		t.Reset(p.idle)
		select {
		case st = <-p.work:
		case <-t.C:
			return
		case <-p.quit:
			return
		}
	}
}

// stop makes idle workers exit; busy ones exit after their call.
func (p *workerPool) stop() { p.once.Do(func() { close(p.quit) }) }
