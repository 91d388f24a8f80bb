package native

import (
	"io"
	"net"
	"runtime"
	"sync"
)

// writer coalesces frames from many goroutines into few write system calls.
// A goroutine appends its frames to the pending buffer; if no one is
// flushing, it becomes the flusher and writes everything pending, including
// what others append meanwhile, until the buffer is empty. So with one call
// in flight there is no hand-off to another goroutine, and under load one
// write carries many calls' frames. Pending bytes are bounded: appenders wait
// while more than maxPending bytes are queued behind a flush.
type writer struct {
	conn net.Conn

	mu       sync.Mutex
	cond     sync.Cond // signalled when a flush round completes
	buf      []byte    // pending frames
	spare    []byte    // the buffer being written, recycled
	flushing bool
	err      error
}

const (
	maxPending   = 4 << 20
	maxKeptBuf   = 1 << 20 // larger buffers are dropped after use
	initialWrite = 16 << 10
)

func newWriter(c net.Conn) *writer {
	w := &writer{conn: c, buf: make([]byte, 0, initialWrite), spare: make([]byte, 0, initialWrite)}
	w.cond.L = &w.mu
	return w
}

// write appends the frames that fill appends to the buffer and flushes
// them, unless another goroutine is flushing and will. fill must only
// append. It returns the connection's write error, if any.
func (w *writer) write(fill func([]byte) []byte) error {
	w.mu.Lock()
	for w.flushing && len(w.buf) > maxPending && w.err == nil {
		w.cond.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.buf = fill(w.buf)
	if w.flushing {
		w.mu.Unlock()
		return nil
	}
	// Become the flusher, but first let goroutines that are about to write
	// append their frames, so one system call carries them all.
	w.flushing = true
	w.mu.Unlock()
	runtime.Gosched()
	w.mu.Lock()
	return w.flushLocked()
}

// flushLocked writes until nothing is pending; it is called with mu held
// and returns with it released.
func (w *writer) flushLocked() error {
	w.flushing = true
	for len(w.buf) > 0 && w.err == nil {
		out := w.buf
		w.buf = w.spare[:0]
		w.mu.Unlock()
		_, err := w.conn.Write(out)
		w.mu.Lock()
		if cap(out) <= maxKeptBuf {
			w.spare = out[:0]
		} else {
			w.spare = make([]byte, 0, initialWrite)
		}
		if err != nil {
			w.err = err
		}
		w.cond.Broadcast()
	}
	w.flushing = false
	err := w.err
	w.cond.Broadcast()
	w.mu.Unlock()
	return err
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

// discard skips n payload bytes without allocating them.
func discard(r io.Reader, n int64) error {
	_, err := io.CopyN(io.Discard, r, n)
	return err
}
