package kernel

import (
	"sync"
	"time"
)

// LogLimiter lets a few log lines of one kind through per second, so that a
// peer cannot flood the log (failed handshakes, denied calls). The zero
// value allows 10 a second. It is safe for concurrent use.
type LogLimiter struct {
	// PerSecond is how many lines a second are let through; 0 means 10.
	PerSecond int

	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed uint64
}

// Allow reports whether a line may be logged now and, if so, how many were
// held back since the last one let through (to be logged with it).
func (l *LogLimiter) Allow() (ok bool, suppressed uint64) {
	limit := l.PerSecond
	if limit <= 0 {
		limit = 10
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= limit {
		l.suppressed++
		return false, 0
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
