package kernel

import (
	"slices"
	"testing"
	"time"
)

// TestLogLimiter: PerSecond lines a second get through; the rest are
// counted and reported with the next line let through.
func TestLogLimiter(t *testing.T) {
	l := LogLimiter{PerSecond: 2}
	var got []bool
	for range 5 {
		ok, _ := l.Allow()
		got = append(got, ok)
	}
	if want := []bool{true, true, false, false, false}; !slices.Equal(got, want) {
		t.Fatalf("allowed %v, want %v", got, want)
	}
	time.Sleep(1100 * time.Millisecond) // the next window
	if ok, suppressed := l.Allow(); !ok || suppressed != 3 {
		t.Fatalf("next window: %v with %d held back, want true with 3", ok, suppressed)
	}
}
