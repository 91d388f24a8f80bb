package kernel

import (
	"net"
	"testing"
	"time"
)

// TestGateReservesDescriptors: when the descriptors left after
// reserved_fds allow fewer connections than max_connections, the gate caps
// at what they allow and names the reserve as the reason for a refusal.
func TestGateReservesDescriptors(t *testing.T) {
	free, ok := freeDescriptors()
	if !ok {
		t.Skip("the system does not say how many descriptors are left")
	}
	cases := []struct {
		name     string
		reserved int
		admitted bool
		reason   string
	}{
		{"room left", 0, true, ""},
		{"all reserved", free + 10, false, "reserved_fds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newConnGate()
			g.setLimits(Limits{MaxConnections: 1 << 20, MaxConnectionsPerIP: 1 << 20, ReservedFDs: c.reserved})
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			release, ok := g.admit(a)
			if ok != c.admitted {
				t.Fatalf("admitted %v, want %v (max %d, %d descriptors free)", ok, c.admitted, g.max, free)
			}
			if ok {
				release()
			}
			v := g.view()
			if c.reason != "" && v.Rejected[c.reason] != 1 {
				t.Errorf("rejections %v, want one for %s", v.Rejected, c.reason)
			}
			if v.Open != 0 {
				t.Errorf("%d connections open after release", v.Open)
			}
		})
	}
}

// TestShouldReclaim: memory is reclaimed once the open connections fell by
// at least reclaimMinDrop and a quarter of their peak, and the peak starts
// again from there.
func TestShouldReclaim(t *testing.T) {
	g := newConnGate()
	g.setLimits(Limits{MaxConnections: 1 << 20, MaxConnectionsPerIP: 1 << 20})
	var releases []func()
	open := func(n int) {
		for range n {
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			r, ok := g.admit(a)
			if !ok {
				t.Fatal("refused")
			}
			releases = append(releases, r)
		}
	}
	closeN := func(n int) {
		for range n {
			releases[len(releases)-1]()
			releases = releases[:len(releases)-1]
		}
	}
	steps := []struct {
		open, close int
		want        bool
	}{
		{open: 300, want: false},
		{close: 60, want: false},  // below reclaimMinDrop
		{close: 20, want: true},   // 80 of 300: both thresholds met
		{close: 50, want: false},  // the peak restarted at 220
		{open: 1000, want: false}, // a new peak, 1170
		{close: 200, want: false}, // under a quarter of 1170
		{close: 100, want: true},
	}
	for i, s := range steps {
		open(s.open)
		closeN(s.close)
		if got := g.shouldReclaim(); got != s.want {
			t.Fatalf("step %d: shouldReclaim %v, want %v (open %d, peak %d)", i, got, s.want, g.open, g.peak)
		}
	}
}

// TestPenalty: an address penalized for abuse is refused until its
// penalty is over, other addresses are not, and sweeping forgets penalties
// that are over.
func TestPenalty(t *testing.T) {
	g := newConnGate()
	g.setLimits(Limits{MaxConnections: 100, MaxConnectionsPerIP: 100})
	bad := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}
	conn := func(ip net.IP) net.Conn { return addrConn{remote: &net.TCPAddr{IP: ip, Port: 2}} }
	g.penalize(bad)
	if _, ok := g.admit(conn(bad.IP)); ok {
		t.Fatal("a penalized address was admitted")
	}
	if release, ok := g.admit(conn(net.IPv4(10, 0, 0, 2))); !ok {
		t.Fatal("another address was refused")
	} else {
		release()
	}
	if n := g.view().Rejected["abuse"]; n != 1 {
		t.Fatalf("rejected for abuse %d, want 1", n)
	}
	ip, _ := ipOf(bad)
	g.penalty[ip] = time.Now().Add(-time.Second) // over
	if release, ok := g.admit(conn(bad.IP)); !ok {
		t.Fatal("refused after the penalty was over")
	} else {
		release()
	}
	g.sweepPenalties(time.Now())
	if len(g.penalty) != 0 {
		t.Fatalf("%d penalties left after the sweep", len(g.penalty))
	}
}

// addrConn is a net.Conn with only a remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }
