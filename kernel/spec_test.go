package kernel

import (
	"strings"
	"testing"
)

func TestNewSpec(t *testing.T) {
	cases := []struct {
		full, service, method string
	}{
		{"/pkg.Svc/Say", "pkg.Svc", "Say"},
		{"/a.b.C/D", "a.b.C", "D"},
		{"Say", "", ""},
		{"/nomethod", "", ""},
	}
	for _, c := range cases {
		s := NewSpec(c.full, StreamTypeServer, true)
		if s.Service != c.service || s.Method != c.method || s.FullMethod != c.full || s.StreamType != StreamTypeServer || !s.Idempotent {
			t.Errorf("NewSpec(%q) = %+v", c.full, s)
		}
	}
}

// TestSpecCache: one shared Spec per method, shape and idempotency, the
// same whether the name is a constant or built afresh.
func TestSpecCache(t *testing.T) {
	var c specCache
	const m = "/pkg.Svc/Say"
	a := c.get(m, StreamTypeUnary, false)
	if a != c.get(m, StreamTypeUnary, false) {
		t.Error("a second call got another Spec")
	}
	built := strings.Clone(m)
	if c.get(built, StreamTypeUnary, false) != a {
		t.Error("the same name at another address got another Spec")
	}
	if b := c.get(m, StreamTypeUnary, true); b == a || !b.Idempotent || b.FullMethod != m {
		t.Errorf("idempotent variant %+v", b)
	}
	if s := c.get(m, StreamTypeBidi, false); s.StreamType != StreamTypeBidi {
		t.Errorf("bidi variant %+v", s)
	}
	if n := testing.AllocsPerRun(100, func() { c.get(built, StreamTypeUnary, false) }); n != 0 {
		t.Errorf("a cached Spec costs %v allocations", n)
	}
}
