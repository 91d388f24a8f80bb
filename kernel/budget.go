package kernel

import "sync/atomic"

// Budget is a process-wide allowance of buffered bytes (request and
// response messages held by connections), so that many connections that
// each stay within their own limits cannot together exhaust memory. A
// protocol acquires before it buffers a message (before reading its body)
// and releases once the bytes are freed; a failed Acquire becomes
// RESOURCE_EXHAUSTED for that call. Methods are safe for concurrent use and
// lock-free; a nil *Budget admits everything.
type Budget struct {
	used  atomic.Int64
	limit atomic.Int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget {
	b := new(Budget)
	b.limit.Store(limit)
	return b
}

// SetLimit changes the limit; bytes already acquired stay acquired.
func (b *Budget) SetLimit(limit int64) { b.limit.Store(limit) }

// Acquire takes n bytes from the budget and reports whether it could: false
// leaves the budget as it was.
func (b *Budget) Acquire(n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	if b.used.Add(n) > b.limit.Load() {
		b.used.Add(-n)
		return false
	}
	return true
}

// Release gives back n bytes that Acquire took.
func (b *Budget) Release(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// Used returns the bytes acquired and not yet released.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}
