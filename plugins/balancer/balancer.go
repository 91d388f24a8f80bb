package balancer

import (
	"errors"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"

	"github.com/axonrpc/axon/kernel"
)

var errEmptyKey = errors.New("a metadata key")

// Weighted sends each endpoint a share of calls proportional to its weight.
// It keeps no state per endpoint: call n goes to the slot (n*stride) mod W
// of the endpoints laid end to end by weight (W the total weight, stride
// coprime with W), so every W consecutive calls hit each endpoint exactly
// its weight's times, interleaved rather than in bursts.
type Weighted struct{ next atomic.Uint64 }

// NewWeighted returns a weighted round-robin balancer.
func NewWeighted() *Weighted { return &Weighted{} }

// Pick implements kernel.Balancer.
func (w *Weighted) Pick(_ *kernel.PickInfo, backends []*kernel.Backend) int {
	total := 0
	for _, b := range backends {
		total += b.Weight()
	}
	n := w.next.Add(1) - 1
	x := int((n * stride(uint64(total))) % uint64(total))
	for i, b := range backends {
		if x < b.Weight() {
			return i
		}
		x -= b.Weight()
	}
	return len(backends) - 1
}

// stride returns a number near total/φ that is coprime with total.
func stride(total uint64) uint64 {
	if total <= 2 {
		return 1
	}
	s := uint64(float64(total)*0.6180339887) | 1
	for gcd(s, total) != 1 {
		s += 2
	}
	return s
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// P2C is the power of two choices: it picks two endpoints at random and
// takes the less loaded one.
type P2C struct{ latency bool }

// NewP2C returns a power-of-two-choices balancer.
func NewP2C(c P2CConfig) *P2C { return &P2C{latency: c.By == "latency"} }

// TracksLatency implements kernel.LatencyBalancer: latency is measured only
// when the balancer compares it.
func (p *P2C) TracksLatency() bool { return p.latency }

// Pick implements kernel.Balancer.
func (p *P2C) Pick(_ *kernel.PickInfo, backends []*kernel.Backend) int {
	n := len(backends)
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	if p.cost(backends[j]) < p.cost(backends[i]) {
		return j
	}
	return i
}

func (p *P2C) cost(b *kernel.Backend) float64 {
	if !p.latency {
		return float64(b.InFlight())
	}
	l := float64(b.Latency())
	if l == 0 {
		return 0 // unknown: try it
	}
	return l * float64(b.InFlight()+1)
}

// Hash sends calls with the same value of a metadata key to the same
// endpoint, by rendezvous (highest random weight) hashing: each call scores
// every endpoint by a hash of the key and the endpoint's address and takes
// the highest, weighted by the endpoint's weight. When an endpoint leaves,
// only its keys move; when one joins, it takes only its share.
type Hash struct {
	key  string
	seed maphash.Seed
	rr   atomic.Uint64
}

// NewHash returns a consistent-hash balancer.
func NewHash(c HashConfig) *Hash { return &Hash{key: strings.ToLower(c.Key), seed: maphash.MakeSeed()} }

// Pick implements kernel.Balancer.
func (h *Hash) Pick(p *kernel.PickInfo, backends []*kernel.Backend) int {
	v := p.Metadata.Get(h.key)
	if v == "" {
		return int(h.rr.Add(1) % uint64(len(backends)))
	}
	kh := maphash.String(h.seed, v)
	best, bestScore := 0, math.Inf(-1)
	for i, b := range backends {
		x := mix(kh ^ maphash.String(h.seed, b.Address()))
		// Weighted rendezvous: -w / ln(u) with u uniform in (0, 1).
		u := (float64(x>>11) + 0.5) / (1 << 53)
		score := -float64(b.Weight()) / math.Log(u)
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// mix is the splitmix64 finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
