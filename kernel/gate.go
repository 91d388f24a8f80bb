package kernel

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connGate admits the connections the runtime's listeners accept against
// the process-wide caps (server.limits.max_connections,
// max_connections_per_ip, reserved_fds). A connection over a cap is closed
// at once, before a goroutine or a buffer is spent on it, and counted. It is
// safe for concurrent use; it is consulted once per connection, never per
// call.
type connGate struct {
	mu       sync.Mutex
	open     int
	peak     int // the most open since the last reclaim (see reclaim.go)
	perIP    map[netip.Addr]int
	penalty  map[netip.Addr]time.Time // refused for abuse until (Dispatcher.Penalize)
	max      int                      // max_connections, lowered to what the descriptors allow
	maxPerIP int
	fdBound  bool // max was lowered by the descriptors left

	rejected [numRejectReasons]atomic.Uint64
}

// The reasons a connection is refused, as the live view names them.
const (
	rejectMaxConnections = iota
	rejectPerIP
	rejectDescriptors
	rejectAbuse
	numRejectReasons
)

var rejectNames = [numRejectReasons]string{"max_connections", "max_connections_per_ip", "reserved_fds", "abuse"}

// abusePenalty is how long the connections of an address that abused one
// (Dispatcher.Penalize) are refused at accept: a peer cut for flooding
// would otherwise reconnect at once and flood again, every cut costing
// the server a handshake and a budget's worth of frames.
const abusePenalty = 10 * time.Second

func newConnGate() *connGate {
	return &connGate{perIP: map[netip.Addr]int{}, penalty: map[netip.Addr]time.Time{}}
}

// penalize refuses the connections of addr's IP for abusePenalty.
func (g *connGate) penalize(addr net.Addr) {
	ip, ok := ipOf(addr)
	if !ok {
		return
	}
	g.mu.Lock()
	g.penalty[ip] = time.Now().Add(abusePenalty)
	g.mu.Unlock()
}

// sweepPenalties forgets the penalties that are over (reclaimLoop calls
// it), so that the map holds only addresses penalized lately.
func (g *connGate) sweepPenalties(now time.Time) {
	g.mu.Lock()
	for ip, until := range g.penalty {
		if !now.Before(until) {
			delete(g.penalty, ip)
		}
	}
	g.mu.Unlock()
}

// setLimits applies a generation's limits. The descriptors the process may
// still open (its RLIMIT_NOFILE less those open now that are not server
// connections, less lim.ReservedFDs, counted at each apply) cap the
// connections too, so that a flood never leaves the process unable to open
// its admin socket or dial its backends.
func (g *connGate) setLimits(lim Limits) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.max, g.maxPerIP, g.fdBound = lim.MaxConnections, lim.MaxConnectionsPerIP, false
	if free, ok := freeDescriptors(); ok {
		if room := free + g.open - lim.ReservedFDs; room < g.max {
			g.max, g.fdBound = max(room, 0), true
		}
	}
}

// admit counts conn in, or returns ok false (and counts the refusal) when a
// cap is reached. release must be called once the connection is closed.
func (g *connGate) admit(conn net.Conn) (release func(), ok bool) {
	ip, hasIP := remoteIP(conn)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.open >= g.max:
		if g.fdBound {
			g.rejected[rejectDescriptors].Add(1)
		} else {
			g.rejected[rejectMaxConnections].Add(1)
		}
		return nil, false
	case hasIP && g.perIP[ip] >= g.maxPerIP:
		g.rejected[rejectPerIP].Add(1)
		return nil, false
	case hasIP && len(g.penalty) > 0 && g.penalized(ip):
		g.rejected[rejectAbuse].Add(1)
		return nil, false
	}
	g.open++
	g.peak = max(g.peak, g.open)
	if hasIP {
		g.perIP[ip]++
	}
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.open--
		if hasIP {
			if g.perIP[ip]--; g.perIP[ip] <= 0 {
				delete(g.perIP, ip)
			}
		}
	}, true
}

// view returns the gate's part of the live view.
func (g *connGate) view() ConnectionsView {
	g.mu.Lock()
	v := ConnectionsView{Open: g.open, Max: g.max, MaxPerIP: g.maxPerIP}
	g.mu.Unlock()
	for i := range g.rejected {
		if n := g.rejected[i].Load(); n > 0 {
			if v.Rejected == nil {
				v.Rejected = map[string]uint64{}
			}
			v.Rejected[rejectNames[i]] = n
		}
	}
	return v
}

// ConnectionsView is what the live view shows of the caps on server
// connections.
type ConnectionsView struct {
	// Open counts the server connections open now, on every listener.
	Open int `json:"open"`
	// Max is the cap in force: max_connections, or less when the
	// descriptors left after reserved_fds allow fewer.
	Max      int `json:"max"`
	MaxPerIP int `json:"max_per_ip"`
	// Rejected counts connections closed at accept, by the cap they hit.
	Rejected map[string]uint64 `json:"rejected,omitempty"`
}

// penalized reports whether ip is refused for abuse now; called with mu
// held.
func (g *connGate) penalized(ip netip.Addr) bool {
	until, ok := g.penalty[ip]
	return ok && time.Now().Before(until)
}

// remoteIP returns the IP address of conn's peer, when it has one (not a
// Unix socket).
func remoteIP(conn net.Conn) (netip.Addr, bool) { return ipOf(conn.RemoteAddr()) }

func ipOf(addr net.Addr) (netip.Addr, bool) {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), true
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// freeDescriptors returns how many more file descriptors the process may
// open, when the system says (Linux: RLIMIT_NOFILE and /proc/self/fd).
func freeDescriptors() (int, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, false
	}
	return int(rl.Cur) - len(names), true
}
