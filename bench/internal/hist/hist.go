// Package hist is a small fixed-size log-linear latency histogram.
//
// Each bucket covers 1/64 of a power-of-two range (relative error under
// about 0.8%), values below 128 ns are exact, and values are clamped at
// about 18 minutes. Recording is a shift, an add and an array increment: no
// locks and no allocation, so every caller goroutine owns one histogram and
// they are merged after the run.
package hist

import (
	"math"
	"math/bits"
	"time"
)

const (
	subBits  = 7
	subCount = 1 << subBits      // 128: values below this are exact
	half     = subCount / 2      // 64 sub-buckets per power of two
	maxValue = uint64(1)<<40 - 1 // clamp (~18 minutes in ns)
	maxShift = 40 - subBits      // shift of maxValue
	nBuckets = maxShift*half + subCount
)

// Hist counts durations in nanoseconds. The zero value is ready to use.
type Hist struct {
	counts [nBuckets]uint64
	n      uint64
	sum    uint64
	min    uint64
	max    uint64
}

func index(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits
	return shift*half + int(v>>uint(shift))
}

// bounds returns the inclusive value range [lo, hi] of bucket i.
func bounds(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	shift := uint(i/half - 1)
	m := uint64(i%half + half)
	lo = m << shift
	return lo, lo + (uint64(1) << shift) - 1
}

// Record adds one observation.
func (h *Hist) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	if v > maxValue {
		v = maxValue
	}
	h.counts[index(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// Merge adds all observations of o into h.
func (h *Hist) Merge(o *Hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of observations.
func (h *Hist) Count() uint64 { return h.n }

// Mean is the exact mean of the observations.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// Max is the exact largest observation.
func (h *Hist) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the q-quantile (0 < q <= 1): the midpoint of the bucket
// holding the ceil(q*n)-th smallest observation, clamped to [min, max].
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			lo, hi := bounds(i)
			v := lo + (hi-lo)/2
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
