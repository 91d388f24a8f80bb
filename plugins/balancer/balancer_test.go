package balancer_test

import (
	"fmt"
	"testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/plugins/balancer"
)

func backends(weights ...int) []*kernel.Backend {
	var bs []*kernel.Backend
	for i, w := range weights {
		bs = append(bs, kernel.NewBackend(kernel.Endpoint{Address: fmt.Sprintf("tcp://10.0.0.%d:1", i+1), Weight: w}, 0))
	}
	return bs
}

func TestWeightedSharesAreExactPerCycle(t *testing.T) {
	for _, weights := range [][]int{{1, 1, 1}, {5, 1, 1}, {3, 0, 2}, {10}, {7, 13}} {
		bs := backends(weights...)
		total := 0
		for _, b := range bs {
			total += b.Weight()
		}
		w := balancer.NewWeighted()
		counts := make([]int, len(bs))
		for range 4 * total {
			counts[w.Pick(&kernel.PickInfo{}, bs)]++
		}
		for i, b := range bs {
			if counts[i] != 4*b.Weight() {
				t.Errorf("weights %v: endpoint %d got %d of %d calls, want %d", weights, i, counts[i], 4*total, 4*b.Weight())
			}
		}
	}
}

func TestWeightedInterleaves(t *testing.T) {
	bs := backends(1, 1, 1, 1, 1, 1)
	w := balancer.NewWeighted()
	last, repeats := -1, 0
	for range 60 {
		i := w.Pick(&kernel.PickInfo{}, bs)
		if i == last {
			repeats++
		}
		last = i
	}
	if repeats != 0 {
		t.Errorf("equal weights picked the same endpoint twice in a row %d times", repeats)
	}
}

func TestP2CPrefersFewerInFlight(t *testing.T) {
	bs := []*kernel.Backend{
		kernel.NewBackend(kernel.Endpoint{Address: "a"}, 50),
		kernel.NewBackend(kernel.Endpoint{Address: "b"}, 0),
		kernel.NewBackend(kernel.Endpoint{Address: "c"}, 50),
	}
	p := balancer.NewP2C(balancer.P2CConfig{By: "inflight"})
	counts := make([]int, 3)
	for range 3000 {
		counts[p.Pick(&kernel.PickInfo{}, bs)]++
	}
	// b is picked whenever it is one of the two candidates: 2/3 of calls.
	if counts[1] < counts[0]+counts[2] {
		t.Errorf("idle endpoint got %d calls, loaded ones %d and %d", counts[1], counts[0], counts[2])
	}
	two := bs[:2]
	for range 100 {
		if i := p.Pick(&kernel.PickInfo{}, two); i != 1 {
			t.Fatalf("with two endpoints p2c picked the loaded one")
		}
	}
}

func TestHashIsStickyAndMovesOnlyRemovedKeys(t *testing.T) {
	h := balancer.NewHash(balancer.HashConfig{Key: "user"})
	bs := backends(1, 1, 1, 1)
	owner := map[string]string{}
	for k := range 400 {
		pi := &kernel.PickInfo{Metadata: metadata.New("user", fmt.Sprint(k))}
		a := bs[h.Pick(pi, bs)].Address()
		if b := bs[h.Pick(pi, bs)].Address(); a != b {
			t.Fatalf("key %d went to %s then %s", k, a, b)
		}
		owner[fmt.Sprint(k)] = a
	}
	per := map[string]int{}
	for _, a := range owner {
		per[a]++
	}
	if len(per) != 4 {
		t.Errorf("400 keys used %d of 4 endpoints: %v", len(per), per)
	}
	removed := bs[2].Address()
	rest := append(append([]*kernel.Backend{}, bs[:2]...), bs[3])
	for k, a := range owner {
		got := rest[h.Pick(&kernel.PickInfo{Metadata: metadata.New("user", k)}, rest)].Address()
		if a != removed && got != a {
			t.Errorf("key %s moved from %s to %s although its endpoint stayed", k, a, got)
		}
	}
}

func TestHashWithoutKeySpreads(t *testing.T) {
	h := balancer.NewHash(balancer.HashConfig{Key: "user"})
	bs := backends(1, 1, 1)
	counts := make([]int, 3)
	for range 30 {
		counts[h.Pick(&kernel.PickInfo{}, bs)]++
	}
	for i, n := range counts {
		if n != 10 {
			t.Errorf("endpoint %d got %d of 30 keyless calls", i, n)
		}
	}
}

func TestFactoriesDecodeStrictly(t *testing.T) {
	bad := config.Raw{Path: "client.balancer.options", Tree: map[string]any{"by": "speed"}}
	if _, err := balancer.P2CFactory.Build(kernel.BuildContext{}, bad); err == nil {
		t.Error("p2c accepted by: speed")
	}
	unknown := config.Raw{Path: "client.balancer.options", Tree: map[string]any{"weights": 1}}
	if _, err := balancer.WeightedFactory.Build(kernel.BuildContext{}, unknown); err == nil {
		t.Error("weighted_round_robin accepted an unknown key")
	}
	if _, err := balancer.HashFactory.Build(kernel.BuildContext{}, config.Raw{Tree: map[string]any{"key": ""}}); err == nil {
		t.Error("consistent_hash accepted an empty key")
	}
}
