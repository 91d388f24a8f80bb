package kernel

import (
	"sync"
	"sync/atomic"
	"testing"
)

type waiter struct {
	name    string
	evicted *[]string
}

func (w waiter) Evict() { *w.evicted = append(*w.evicted, w.name) }

// TestBudgetEvictsOldestWaits: when the budget is spent, Acquire and Await
// evict the waits that have waited longest, as many as it takes, and refuse
// only when evicting every wait is not enough; Leave gives a charge back
// once, and not for a wait already evicted.
func TestBudgetEvictsOldestWaits(t *testing.T) {
	var evicted []string
	b := NewBudget(100)
	ws := map[string]*Wait{}
	await := func(name string, n int64) bool {
		ws[name] = new(Wait)
		return b.Await(ws[name], n, waiter{name, &evicted})
	}
	steps := []struct {
		do      func() bool
		want    bool
		used    int64
		evicted string // evicted so far, in order
	}{
		{func() bool { return await("a", 30) }, true, 30, ""},
		{func() bool { return await("b", 30) }, true, 60, ""},
		{func() bool { return await("c", 30) }, true, 90, ""},
		{func() bool { return b.Acquire(10) }, true, 100, ""},            // fits exactly
		{func() bool { return b.Acquire(40) }, true, 80, "a b"},          // the two oldest make room
		{func() bool { b.Leave(ws["a"]); return true }, true, 80, "a b"}, // evicted: no charge back
		{func() bool { return await("d", 10) }, true, 90, "a b"},
		{func() bool { return b.Acquire(30) }, true, 90, "a b c"},
		{func() bool { return b.Acquire(20) }, true, 100, "a b c d"},
		{func() bool { return b.Acquire(1) }, false, 100, "a b c d"}, // nothing left to evict
		{func() bool { return await("e", 10) }, false, 100, "a b c d"},
		{func() bool { b.Release(60); return await("e", 10) }, true, 50, "a b c d"},
		{func() bool { b.Leave(ws["e"]); b.Leave(ws["e"]); return true }, true, 40, "a b c d"},
	}
	for i, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("step %d: got %v, want %v", i, got, s.want)
		}
		if u := b.Used(); u != s.used {
			t.Fatalf("step %d: used %d, want %d", i, u, s.used)
		}
		if got := join(evicted); got != s.evicted {
			t.Fatalf("step %d: evicted %q, want %q", i, got, s.evicted)
		}
	}
}

func join(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out
}

type countWaiter struct{ n *atomic.Int64 }

func (c countWaiter) Evict() { c.n.Add(1) }

// TestBudgetConcurrent: waits and acquisitions from many goroutines leave
// the budget exactly as it started (run with -race).
func TestBudgetConcurrent(t *testing.T) {
	b := NewBudget(500)
	var evictions atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				var w Wait
				if b.Await(&w, 64, countWaiter{&evictions}) {
					if b.Acquire(100) {
						b.Release(100)
					}
					b.Leave(&w)
				}
			}
		})
	}
	wg.Wait()
	if u := b.Used(); u != 0 {
		t.Fatalf("used %d after everything was given back", u)
	}
	t.Logf("%d waits evicted", evictions.Load())
}
