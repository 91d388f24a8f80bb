package native

import (
	"errors"
	"io"
	"math/bits"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel"
)

// writer coalesces frames from many goroutines into few write system calls.
// A goroutine appends its frames to the pending buffer; if no one is
// flushing, it becomes the flusher and writes everything pending, including
// what others append meanwhile, until the buffer is empty. So with one call
// in flight there is no hand-off to another goroutine, and under load one
// write carries many calls' frames. Pending bytes are bounded: appenders wait
// while more than maxPending bytes are queued behind a flush.
//
// Streaming DATA frames take another path, writeLater: the frames are
// appended the same way, but the flush is handed to the connection's stream
// writer goroutine (loop) instead of being done by the sender. A stream's
// sender then goes on encoding its next messages while a write is in the
// kernel, and those batch into the next write; flushing inline, one stream
// made one write per message. The goroutine starts with the first
// writeLater and exits when the connection fails or after idle with
// nothing handed to it. Unary calls keep the inline flush, which serves
// their latency. All frames share one buffer, so they reach the wire in the
// order they were appended, whoever flushes them.
type writer struct {
	conn  net.Conn
	idle  time.Duration     // how long loop waits for work before it exits
	stats *kernel.ConnStats // counts what is written, if set; set before the first write
	// Set before the first write (the server sets them from its limits):
	limit      int           // appenders wait while more than this is pending behind a flush
	timeout    time.Duration // a write that makes no progress for this long fails; 0: none
	closeOnErr bool          // close conn when a write fails, so that its reader ends too
	resumable  bool          // a write can go on after its deadline passed (plain TCP; not TLS)

	mu       sync.Mutex
	cond     sync.Cond // signalled when a flush round completes
	buf      []byte    // pending frames
	spare    []byte    // the buffer being written, recycled
	flushing bool      // a flush is in progress, or handed to loop
	err      error
	looping  bool          // loop is running
	failed   bool          // fail has closed closed
	kick     chan struct{} // a flush handed to loop; sent under mu only
	closed   chan struct{} // closed by fail
	broken   atomic.Bool   // set once err is; read without mu
	inflight int           // bytes of the write in progress
	ctl      int           // bytes tryWrite added to buf since a flush took it
	pending  atomic.Int64  // len(buf) + inflight, stored under mu; read without it (backlog)
}

// backlog returns the bytes accepted and not yet written. It takes no lock.
func (w *writer) backlog() int64 { return w.pending.Load() }

// errBacklog is tryWrite's answer when the connection's output is too far
// behind to queue even a small frame.
var errBacklog = errors.New("protocol.axon: the peer does not read: output backlog over its limit")

// isBroken reports whether a write has failed, so that no frame will reach
// the peer any more. It takes no lock.
func (w *writer) isBroken() bool { return w.broken.Load() }

const (
	maxPending   = 4 << 20
	maxKeptBuf   = 1 << 20 // larger buffers are dropped after use
	initialWrite = 16 << 10
	// minWriteProgress is what a write must have written when its deadline
	// passes for it to get another write_timeout (writeOut).
	minWriteProgress = 16 << 10
)

// writerIdle is how long a connection's stream writer goroutine waits for
// work before it exits (it exits after between one and two idle periods);
// the next stream message starts it again. A variable for tests.
var writerIdle = 2 * time.Second

func newWriter(c net.Conn) *writer {
	w := &writer{conn: c, idle: writerIdle, limit: maxPending, buf: make([]byte, 0, initialWrite), spare: make([]byte, 0, initialWrite),
		kick: make(chan struct{}, 1), closed: make(chan struct{})}
	w.cond.L = &w.mu
	return w
}

// write appends the frames that fill appends to the buffer and flushes
// them, unless another goroutine is flushing and will. fill must only
// append. It returns the connection's write error, if any.
func (w *writer) write(fill func([]byte) []byte) error {
	if err := w.appendLocked(fill); err != nil {
		return err
	}
	return w.flushOrLeaveLocked()
}

// flushOrLeaveLocked ends a write that appended its frames, with mu held:
// when a flush is in progress it carries them and the write returns;
// otherwise the writer becomes the flusher, but first lets goroutines that
// are about to write append their frames, so one system call carries them
// all. It returns with mu released.
func (w *writer) flushOrLeaveLocked() error {
	if w.flushing {
		w.mu.Unlock()
		return nil
	}
	w.flushing = true
	w.mu.Unlock()
	runtime.Gosched()
	w.mu.Lock()
	return w.flushLocked()
}

// tryWrite is write for the connection's reader goroutine, which must not
// wait for the peer to read: it never waits for the buffer to drain, but
// once more than hard bytes it queued are waiting behind a flush it queues
// nothing and returns errBacklog (the caller then drops the connection).
// So what a peer that does not read makes the reader queue (refusals, PING
// answers) stays bounded, while a peer that reads slowly is still told.
func (w *writer) tryWrite(fill func([]byte) []byte, hard int) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if w.ctl > hard {
		w.mu.Unlock()
		return errBacklog
	}
	n := len(w.buf)
	w.buf = fill(w.buf)
	w.ctl += len(w.buf) - n
	w.pending.Store(int64(len(w.buf) + w.inflight))
	return w.flushOrLeaveLocked()
}

// appendLocked waits while a flush is in progress and more than limit bytes
// are pending (queued or being written: so a writer holds about limit bytes,
// plus one response, not twice that), then appends what fill appends. It returns with mu held, or
// with the connection's write error and mu released.
func (w *writer) appendLocked(fill func([]byte) []byte) error {
	w.mu.Lock()
	for w.flushing && len(w.buf)+w.inflight > w.limit && w.err == nil {
		w.cond.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.buf = fill(w.buf)
	w.pending.Store(int64(len(w.buf) + w.inflight))
	return nil
}

// waitDrain blocks while a flush is in progress and more than limit bytes
// are pending, for at most d (0: no bound). It reports whether the backlog
// is down to limit; false once the writer failed or d passed. The reader
// calls it when the peer leaves its output unread, so as to stop taking
// input from a peer that does not take output.
func (w *writer) waitDrain(limit int, d time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	over := func() bool { return w.flushing && len(w.buf)+w.inflight > limit && w.err == nil }
	if !over() {
		return w.err == nil
	}
	expired := false
	if d > 0 {
		t := time.AfterFunc(d, func() {
			w.mu.Lock()
			expired = true
			w.cond.Broadcast()
			w.mu.Unlock()
		})
		defer t.Stop()
	}
	for over() && !expired {
		w.cond.Wait()
	}
	return !over() && w.err == nil
}

// writeLater appends the frames that fill appends to the buffer, like write,
// but does not write them itself: unless a flush is already in progress,
// which will take them, it hands the flush to the stream writer goroutine,
// starting it if it is not running. It returns the connection's write error,
// if any; frames it accepted are lost if the connection fails before they
// are written, as with write when another goroutine flushes.
func (w *writer) writeLater(fill func([]byte) []byte) error {
	if err := w.appendLocked(fill); err != nil {
		return err
	}
	if !w.flushing {
		w.flushing = true
		if !w.looping {
			w.looping = true
			go w.loop()
		}
		// Sent under mu, so loop, deciding under mu whether to exit,
		// sees every flush handed to it.
		signal(w.kick)
	}
	w.mu.Unlock()
	return nil
}

// loop is the stream writer goroutine: it flushes what writeLater hands it.
// It exits when the connection fails, or when a whole idle period passed
// without work (so a busy connection does not re-arm a timer per flush).
func (w *writer) loop() {
	t := time.NewTimer(w.idle)
	defer t.Stop()
	busy := false
	for {
		select {
		case <-w.kick:
			w.mu.Lock()
			if err := w.flushLocked(); err != nil {
				w.stopLoop()
				return
			}
			busy = true
		case <-t.C:
			w.mu.Lock()
			if busy || len(w.kick) > 0 {
				w.mu.Unlock()
				busy = false
				t.Reset(w.idle)
				continue
			}
			w.looping = false
			w.mu.Unlock()
			return
		case <-w.closed:
			w.stopLoop()
			return
		}
	}
}

// stopLoop ends loop once the connection has failed: a flush still handed
// to it is released (nothing more can be written), and the next writeLater
// returns the error.
func (w *writer) stopLoop() {
	w.mu.Lock()
	select {
	case <-w.kick:
		w.flushLocked() // writes nothing: w.err is set; releases mu
		w.mu.Lock()
	default:
	}
	w.looping = false
	w.mu.Unlock()
}

// flushLocked writes until nothing is pending; it is called with mu held
// and returns with it released.
func (w *writer) flushLocked() error {
	w.flushing = true
	for len(w.buf) > 0 && w.err == nil {
		out := w.buf
		w.buf = w.spare[:0]
		w.inflight, w.ctl = len(out), 0
		w.mu.Unlock()
		n, err := w.writeOut(out)
		if n > 0 && w.stats != nil {
			w.stats.Wrote(n, time.Now())
		}
		w.mu.Lock()
		w.inflight = 0
		if cap(out) <= maxKeptBuf {
			w.spare = out[:0]
		} else {
			w.spare = make([]byte, 0, initialWrite)
		}
		if err != nil {
			w.err = err
			w.broken.Store(true)
			if w.closeOnErr {
				abort(w.conn) // the reader ends, and the connection with it
			}
		}
		w.pending.Store(int64(len(w.buf)))
		w.cond.Broadcast()
	}
	w.flushing = false
	err := w.err
	if err != nil {
		w.release()
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	return err
}

// writeOut writes out. With a timeout, a write fails once it has made no
// progress (less than minWriteProgress) for that long. Where a write can be
// resumed after its deadline (resumable: plain TCP), the deadline comes in
// quarters of the timeout, so that the time of the last progress is known
// to a quarter: a write that fills the socket at once and then stalls
// fails about a timeout after it stalled, not a timeout after a deadline
// renewed by that early progress. Elsewhere (TLS, whose writes cannot
// resume after a timeout) the deadline is the whole timeout, renewed after
// progress.
func (w *writer) writeOut(out []byte) (int, error) {
	if w.timeout <= 0 {
		return w.conn.Write(out)
	}
	step := w.timeout
	if w.resumable {
		step = max(w.timeout/4, time.Millisecond)
	}
	total, moved := 0, 0 // moved: written since the last progress
	last := time.Now()   // the last progress
	for {
		d := min(step, w.timeout-time.Since(last))
		w.conn.SetWriteDeadline(time.Now().Add(d))
		n, err := w.conn.Write(out[total:])
		total += n
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
		// A peer that does not read still lets a few bytes in now and
		// then (a zero-window probe, its kernel collapsing its receive
		// queue): that is not progress.
		if moved += n; moved >= min(len(out)-(total-moved), minWriteProgress) {
			last, moved = time.Now(), 0
		}
		if time.Since(last) >= w.timeout || (!w.resumable && n == 0) {
			return total, err
		}
	}
}

// release drops the buffers of a writer that failed (nothing more will be
// written); called with mu held when no flush is in progress.
func (w *writer) release() {
	w.buf, w.spare = nil, nil
	w.pending.Store(0)
}

// waitIdle blocks until no flush is in progress and nothing is pending, so
// that closing the connection loses no frame already accepted by write.
func (w *writer) waitIdle() {
	w.mu.Lock()
	for (w.flushing || len(w.buf) > 0) && w.err == nil {
		w.cond.Wait()
	}
	w.mu.Unlock()
}

// fail makes every later write return err, and wakes waiters.
func (w *writer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.broken.Store(true)
	if !w.flushing {
		w.release() // else the flusher does, once its write returns
	}
	if !w.failed {
		w.failed = true
		close(w.closed) // ends loop
	}
	w.cond.Broadcast()
	w.mu.Unlock()
}

// bufPool recycles message buffers up to 64 KiB; larger messages get a
// buffer of their own, which the garbage collector reclaims.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooled = 64 << 10

func getBuf(n int) *[]byte {
	if n > maxPooled {
		b := make([]byte, n)
		return &b
	}
	bp := bufPool.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, n, max(n, 2*cap(*bp)))
	}
	*bp = (*bp)[:n]
	return bp
}

func putBuf(bp *[]byte) {
	if bp != nil && cap(*bp) <= maxPooled {
		*bp = (*bp)[:0]
		bufPool.Put(bp)
	}
}

// Received stream messages wait in their stream's queue until the
// application takes them, so they come from size classes rather than from
// bufPool: a message of n bytes holds a buffer of less than 2n (at least
// minRecvClass), never a large pooled one. A message costs its stream's
// window n+frameCost, so what a stream buffers stays under twice its window
// (plus one message over the window). Messages above maxRecvClass get a
// buffer of their own. The buffer goes back after the codec's Unmarshal,
// which does not retain its input (kernel.Codec).
const (
	minRecvShift = 4  // 16 bytes
	maxRecvShift = 16 // 64 KiB
	maxRecvClass = 1 << maxRecvShift
)

var recvPools [maxRecvShift - minRecvShift + 1]sync.Pool

// recvClass returns the index of the smallest class that holds n bytes.
func recvClass(n int) int {
	if n <= 1<<minRecvShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minRecvShift
}

// getRecvBuf returns a buffer of length n for a received stream message.
func getRecvBuf(n int) *[]byte {
	if n > maxRecvClass {
		b := make([]byte, n)
		return &b
	}
	i := recvClass(n)
	if bp, _ := recvPools[i].Get().(*[]byte); bp != nil {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, 1<<(i+minRecvShift))
	return &b
}

// putRecvBuf gives back a buffer from getRecvBuf once nothing refers to it.
func putRecvBuf(bp *[]byte) {
	c := cap(*bp)
	if c > maxRecvClass || c < 1<<minRecvShift || c&(c-1) != 0 {
		return
	}
	*bp = (*bp)[:0]
	recvPools[recvClass(c)].Put(bp)
}

// discard skips n payload bytes without allocating them.
func discard(r io.Reader, n int64) error {
	_, err := io.CopyN(io.Discard, r, n)
	return err
}
