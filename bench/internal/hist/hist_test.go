package hist

import (
	"testing"
	"time"
)

func TestBucketsContiguous(t *testing.T) {
	prevHi := uint64(0)
	for i := 1; i < nBuckets; i++ {
		lo, hi := bounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if index(lo) != i || index(hi) != i {
			t.Fatalf("bucket %d [%d,%d] maps to %d,%d", i, lo, hi, index(lo), index(hi))
		}
		prevHi = hi
	}
	if prevHi != maxValue {
		t.Fatalf("last bucket ends at %d, want %d", prevHi, maxValue)
	}
}

func TestQuantile(t *testing.T) {
	var a, b Hist
	for i := 1; i <= 1000; i++ {
		a.Record(time.Duration(i) * time.Microsecond)
	}
	b.Merge(&a)
	if b.Count() != 1000 {
		t.Fatalf("count %d", b.Count())
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := b.Quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d > 0.01 || d < -0.01 {
			t.Errorf("q%.2f = %v, want ~%v", tc.q, got, tc.want)
		}
	}
}
