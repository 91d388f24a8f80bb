package kernel

import (
	"sync"
	"sync/atomic"
)

// Budget is a process-wide allowance of buffered bytes (request and
// response messages held by connections), so that many connections that
// each stay within their own limits cannot together exhaust memory. A
// protocol acquires before it buffers a message (before reading its body)
// and releases once the bytes are freed; a failed Acquire becomes
// RESOURCE_EXHAUSTED for that call.
//
// A call that waits for its request (its headers are in, its message is
// not) can be charged as a Wait: what it holds meanwhile (a goroutine, its
// headers) counts against the budget, and when an Acquire or Await finds
// the budget spent, the waits that have waited longest are evicted first,
// as many as it takes, before anything is refused. So a peer that opens
// calls and never sends their requests loses its own oldest calls, while a
// legitimate call, whose request follows its headers at once, is never the
// oldest for long.
//
// Methods are safe for concurrent use; Acquire and Release are lock-free
// while the budget is not spent. A nil *Budget admits everything.
type Budget struct {
	used  atomic.Int64
	limit atomic.Int64

	mu         sync.Mutex // guards the waits
	head, tail *Wait      // oldest first
}

// Wait is one waiting call's charge (Budget.Await). The zero value is
// ready; a Wait must not be copied once used.
type Wait struct {
	prev, next *Wait
	n          int64
	call       Waiter
	linked     atomic.Bool // on the budget's list; changed under its mu only
}

// Waiter is a call waiting for its request. Evict, called at most once, on
// another call's goroutine and without the budget's locks held, must make
// the call fail soon with RESOURCE_EXHAUSTED and must not block.
type Waiter interface{ Evict() }

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget {
	b := new(Budget)
	b.limit.Store(limit)
	return b
}

// SetLimit changes the limit; bytes already acquired stay acquired.
func (b *Budget) SetLimit(limit int64) { b.limit.Store(limit) }

// Acquire takes n bytes from the budget and reports whether it could,
// evicting the oldest waits if that makes room: false leaves the budget as
// it was.
func (b *Budget) Acquire(n int64) bool {
	if b == nil || n <= 0 || b.tryAcquire(n) {
		return true
	}
	b.mu.Lock()
	evicted, ok := b.acquireLocked(n)
	b.mu.Unlock()
	runEvictions(evicted)
	return ok
}

func (b *Budget) tryAcquire(n int64) bool {
	if b.used.Add(n) > b.limit.Load() {
		b.used.Add(-n)
		return false
	}
	return true
}

// acquireLocked takes n bytes, taking the oldest waits off the list (and
// their charges back) while it cannot; it returns the evicted calls, to be
// told once mu is released.
func (b *Budget) acquireLocked(n int64) ([]Waiter, bool) {
	var evicted []Waiter
	for !b.tryAcquire(n) {
		w := b.head
		if w == nil {
			return evicted, false
		}
		evicted = append(evicted, w.call)
		b.unlinkLocked(w)
	}
	return evicted, true
}

func runEvictions(calls []Waiter) {
	for _, c := range calls {
		c.Evict()
	}
}

// Release gives back n bytes that Acquire took.
func (b *Budget) Release(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// Await charges w with n bytes for call, which waits for its request, as
// the newest wait; call.Evict is called if the wait is evicted to make
// room. Await reports false, charging nothing, when the budget is spent
// even with every wait evicted. The call ends its wait with Leave once its
// request arrives or it ends.
func (b *Budget) Await(w *Wait, n int64, call Waiter) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	evicted, ok := b.acquireLocked(n)
	if ok {
		w.n, w.call = n, call
		w.linked.Store(true)
		w.prev, w.next = b.tail, nil
		if b.tail != nil {
			b.tail.next = w
		} else {
			b.head = w
		}
		b.tail = w
	}
	b.mu.Unlock()
	runEvictions(evicted)
	return ok
}

// Leave ends w's wait and gives back its charge, unless it was evicted
// (or never charged). It is safe to call more than once; it takes no lock
// for a wait that is not charged. It must be called by the goroutine that
// called Await (or after it).
func (b *Budget) Leave(w *Wait) {
	if b == nil || !w.linked.Load() {
		return
	}
	b.mu.Lock()
	if w.linked.Load() {
		b.unlinkLocked(w)
	}
	b.mu.Unlock()
}

// unlinkLocked takes w off the list and gives back its charge.
func (b *Budget) unlinkLocked(w *Wait) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		b.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		b.tail = w.prev
	}
	w.prev, w.next, w.call = nil, nil, nil
	w.linked.Store(false)
	b.used.Add(-w.n)
}

// Used returns the bytes acquired and not yet released.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}
