package kernel

import (
	"net"
	"testing"
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
