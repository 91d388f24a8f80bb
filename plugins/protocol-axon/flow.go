package native

import (
	"errors"
	"io"
	"sync"

	"github.com/axonrpc/axon/kernel"
)

// Flow control of streaming calls (unary calls need none: one message each
// way, bounded by max_message and max_concurrent_streams).
//
// Each side of a stream announces, in its SETTINGS, the window it grants
// every stream it receives on (stream_window, default 64 KiB). A DATA frame
// costs its payload length plus frameCost. A sender may send a DATA frame
// while its credit for the stream is positive, and then subtracts the
// frame's cost, so credit may go negative: a message larger than the window
// is still sendable, one at a time. The receiver buffers what arrives and
// gives the credit back in a WINDOW_UPDATE once the application has taken
// a quarter of a window's worth (so a sender gets credit back well before
// it runs out). A receiver therefore never holds more than window +
// max_message (+ frameCost) bytes of one stream (in buffers of less than
// twice that: see getRecvBuf); a frame that arrives while the receiver
// already holds a full window was sent without credit, and ends that
// stream (not the connection) with RESOURCE_EXHAUSTED.
//
// A receiver's window grows while its application keeps up. A sender marks
// the DATA frame that uses up its credit (flagBlocked); if this side holds
// at most a quarter of the window unread when such a frame arrives, the
// window, not the reader, is what limits the stream (credit comes back too
// slowly for the link), so the receiver doubles the window, up to
// stream_window_max, and grants the difference with the next credit it
// gives back. A stream whose application does not read never grows: what
// it buffers stays bounded by the window it had.
const (
	defaultStreamWindow    = 64 << 10
	defaultMaxStreamWindow = 256 << 10
	frameCost              = headerLen
	maxCredit              = 1 << 40 // credit saturates here; a peer cannot overflow it
)

var (
	// errSkip says a stream no longer takes messages: the frame's bytes are
	// discarded.
	errSkip = errors.New("stream takes no more messages")
	// errOverWindow says the peer sent a frame without credit.
	errOverWindow = errors.New("peer sent past its flow control window")
)

// flow is one streaming call's receive queue and its credit in both
// directions. The connection's reader goroutine admits and pushes received
// messages and grants send credit; the stream's receiving goroutine takes
// messages; its sending goroutine spends credit. All fields are guarded by
// mu. Messages in the queue are owned by the flow until taken, then by the
// taker.
type flow struct {
	mu          sync.Mutex
	queue       []*[]byte      // received messages (from getRecvBuf), oldest first, from head on
	head        int            // queue[:head] are taken (nil)
	eof         bool           // the peer half-closed: nothing follows the queue
	err         error          // set once the stream ended for this side; io.EOF for a successful end
	keepQueue   bool           // deliver the queue before err
	window      int64          // the window this side grants now
	maxWindow   int64          // what window may grow to
	grow        bool           // the window held the peer back: grow it when credit is next given back
	outstanding int64          // bytes received and not yet granted back
	unacked     int64          // bytes taken and not yet granted back
	credit      int64          // bytes this side may still send
	unlimited   bool           // the peer does no flow control (a unary client calling a streaming method)
	budget      *kernel.Budget // a server's: queued messages hold their length of it until taken or dropped; nil on a client

	recvReady chan struct{} // signalled when the queue or the state changes
	sendReady chan struct{} // signalled when credit arrives
}

func (f *flow) init(window, maxWindow, credit int64, unlimited bool) {
	f.window, f.maxWindow, f.credit, f.unlimited = window, max(window, maxWindow), credit, unlimited
	f.recvReady = make(chan struct{}, 1)
	f.sendReady = make(chan struct{}, 1)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// admit reserves room for a DATA frame of n payload bytes before its
// payload is read, so nothing is allocated for a frame sent without credit;
// blocked says the frame used up the peer's credit (flagBlocked). It
// returns errSkip when the stream takes no more messages and errOverWindow
// when the peer had no credit.
func (f *flow) admit(n uint32, blocked bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.err != nil || f.eof:
		return errSkip
	case f.outstanding >= f.window:
		return errOverWindow
	}
	if blocked && f.outstanding-f.unacked <= f.window/4 && f.window < f.maxWindow {
		f.grow = true
	}
	f.outstanding += int64(n) + frameCost
	return nil
}

// push queues a received message (when msg is not nil) and records a
// half-close (when eof is set). It takes ownership of msg.
func (f *flow) push(msg *[]byte, eof bool) {
	f.mu.Lock()
	if f.err == nil && !f.eof {
		if msg != nil {
			if len(f.queue) == cap(f.queue) && f.head > 0 {
				// Full, with taken slots in front: move down rather than grow.
				n := copy(f.queue, f.queue[f.head:])
				clear(f.queue[n:])
				f.queue, f.head = f.queue[:n], 0
			}
			f.queue = append(f.queue, msg)
			msg = nil
		}
		f.eof = eof
	}
	f.mu.Unlock()
	if msg != nil {
		f.budget.Release(int64(len(*msg)))
		putRecvBuf(msg) // the stream takes no more messages
	}
	signal(f.recvReady)
}

// take returns the next received message, which the caller gives back
// with putRecvBuf when it is done with it, io.EOF once the peer has
// half-closed and the queue is empty, or the error the stream ended with.
// It blocks until one of those or until done is closed; then it returns
// doneErr() if doneErr is not nil, and otherwise looks again (the closer of
// done has set the stream's error first).
func (f *flow) take(done <-chan struct{}, doneErr func() error) (*[]byte, error) {
	for {
		f.mu.Lock()
		if f.err != nil && (!f.keepQueue || f.head == len(f.queue)) {
			err := f.err
			f.mu.Unlock()
			return nil, err
		}
		if f.head < len(f.queue) {
			m := f.queue[f.head]
			f.queue[f.head] = nil
			f.head++
			if f.head == len(f.queue) {
				// Empty: reuse the array from its start.
				f.queue, f.head = f.queue[:0], 0
			}
			f.mu.Unlock()
			return m, nil
		}
		eof := f.eof
		f.mu.Unlock()
		if eof {
			return nil, io.EOF
		}
		select {
		case <-f.recvReady:
		case <-done:
			if doneErr != nil {
				return nil, doneErr()
			}
		}
	}
}

// taken records that a message of n bytes was taken and returns the credit
// to grant the peer in a WINDOW_UPDATE now, or 0. When the window is to
// grow, the grant includes the growth and goes at once.
func (f *flow) taken(n int) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unacked += int64(n) + frameCost
	if f.eof || f.err != nil || (f.unacked < f.window/4 && !f.grow) {
		return 0
	}
	g := f.unacked
	f.unacked = 0
	f.outstanding -= g
	if f.grow {
		f.grow = false
		old := f.window
		f.window = min(2*old, f.maxWindow)
		g += f.window - old
	}
	return g
}

// spend waits for positive credit and takes a frame of n payload bytes from
// it. It returns the DATA frame's flags: flagBlocked when the frame uses up
// the credit, else 0. ok is false, and nothing is spent, if done is closed
// first.
func (f *flow) spend(n int, done <-chan struct{}) (flags byte, ok bool) {
	for {
		f.mu.Lock()
		if f.unlimited || f.credit > 0 {
			f.credit -= int64(n) + frameCost
			if !f.unlimited && f.credit <= 0 {
				flags = flagBlocked
			}
			f.mu.Unlock()
			return flags, true
		}
		f.mu.Unlock()
		select {
		case <-f.sendReady:
		case <-done:
			return 0, false
		}
	}
}

// grant adds credit from a WINDOW_UPDATE.
func (f *flow) grant(inc uint64) {
	f.mu.Lock()
	f.credit = min(f.credit+int64(min(inc, maxCredit)), maxCredit)
	f.mu.Unlock()
	signal(f.sendReady)
}

// end ends the stream for this side with err (io.EOF for success). With
// keep, messages already queued are still delivered before err; without,
// they are dropped. Later frames are skipped. It reports whether this call
// ended the stream.
func (f *flow) end(err error, keep bool) bool {
	f.mu.Lock()
	if f.err != nil {
		f.mu.Unlock()
		return false
	}
	f.err, f.keepQueue = err, keep
	var dropped []*[]byte
	if !keep {
		dropped, f.queue, f.head = f.queue[f.head:], nil, 0
	}
	f.mu.Unlock()
	for _, m := range dropped {
		f.budget.Release(int64(len(*m)))
		putRecvBuf(m)
	}
	signal(f.recvReady)
	signal(f.sendReady)
	return true
}

// appendWindowUpdate appends a WINDOW_UPDATE granting inc bytes on stream.
func appendWindowUpdate(b []byte, stream uint32, inc int64) []byte {
	start := len(b)
	b = appendHeader(b, 0, frameWindow, 0, stream)
	b = appendUvarint(b, uint64(inc))
	return setLength(b, start)
}
