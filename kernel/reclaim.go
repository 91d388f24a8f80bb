package kernel

import (
	"runtime/debug"
	"time"
)

// Memory that a burst of connections held (an attack, a reconnect storm)
// is garbage once they close, but the Go runtime keeps the pages for
// minutes unless it collects and returns them: the process would stay at
// its peak size. reclaimLoop watches the connection count and, when it has
// fallen by a good share of its recent peak, collects and returns freed
// memory to the system (debug.FreeOSMemory), at most once per
// reclaimEvery, and again on the next reclaimFollowUps rounds: the memory
// of a closed connection becomes garbage only when everything it started
// has ended (handlers waiting for a body that will not come, writers
// failing their last write), which may be a round or two after the count
// fell. It never runs on the call path.

// reclaimEvery is how often the loop looks, and the least time between two
// reclaims.
const reclaimEvery = 2 * time.Second

// reclaimMinDrop is the least number of connections that must have closed
// since the peak for a reclaim: a few closing is routine.
const reclaimMinDrop = 64

// reclaimFollowUps is how many rounds after a reclaim reclaim again.
const reclaimFollowUps = 2

// reclaimLoop runs until stop is closed.
func (g *connGate) reclaimLoop(stop <-chan struct{}) {
	t := time.NewTicker(reclaimEvery)
	defer t.Stop()
	followUps := 0
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			g.sweepPenalties(now)
		}
		switch {
		case g.shouldReclaim():
			followUps = reclaimFollowUps
		case followUps > 0:
			followUps--
		default:
			continue
		}
		debug.FreeOSMemory()
	}
}

// shouldReclaim reports whether the open connections fell, since the peak
// seen after the last reclaim, by at least reclaimMinDrop and a quarter of
// that peak; it then starts a new peak from the current count.
func (g *connGate) shouldReclaim() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	drop := g.peak - g.open
	if drop < reclaimMinDrop || drop < g.peak/4 {
		return false
	}
	g.peak = g.open
	return true
}
