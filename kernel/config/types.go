package config

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// Raw holds an undecoded subtree, such as a plugin's options block, together
// with the key path where it was found, so that its owner can decode it later
// into its own typed Config with correct error paths. A Raw field accepts a
// mapping; null or an absent key leaves it zero.
type Raw struct {
	Path string
	Tree map[string]any
}

// Decode decodes the subtree into out exactly like Decode(r.Tree, r.Path, out):
// a nil or empty tree leaves out's defaults, though required keys and Validate
// are still checked.
func (r Raw) Decode(out any) error { return Decode(r.Tree, r.Path, out) }

// IsZero reports whether r holds no keys.
func (r Raw) IsZero() bool { return len(r.Tree) == 0 }

// Duration is a time.Duration that decodes from a Go duration string such as
// "30s", "1.5s" or "250ms". Plain time.Duration fields decode the same way.
type Duration time.Duration

// String formats d like time.Duration.String.
func (d Duration) String() string { return time.Duration(d).String() }

// Size is a byte count. It decodes from a non-negative integer or from a
// string of digits (optionally with a fraction) followed by a unit: B, KB, MB,
// GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), with no
// space, such as "4MiB", "512KiB", "64KB", "1.5GiB", "100B" or "1024".
// The result must be a whole number of bytes.
type Size int64

var sizeUnits = []struct {
	name string
	mult int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

// String formats s with the largest unit that divides it exactly, preferring
// binary units: 4194304 is "4MiB", 64000 is "64KB", 100 is "100B".
func (s Size) String() string {
	n, sign := int64(s), ""
	if n == math.MinInt64 {
		return strconv.FormatInt(n, 10) + "B"
	}
	if n < 0 {
		n, sign = -n, "-"
	}
	for _, u := range sizeUnits {
		if n != 0 && n%u.mult == 0 {
			return sign + strconv.FormatInt(n/u.mult, 10) + u.name
		}
	}
	return sign + strconv.FormatInt(n, 10) + "B"
}

// parseSize parses the string form described on Size.
func parseSize(s string) (Size, bool) {
	num := strings.TrimRight(s, "BKMGTi")
	unit, mult := s[len(num):], int64(0)
	if unit == "" {
		mult = 1
	}
	for _, u := range sizeUnits {
		if u.name == unit {
			mult = u.mult
		}
	}
	whole, frac, dot := strings.Cut(num, ".")
	if mult == 0 || !digits(whole) || (dot && !digits(frac)) {
		return 0, false
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, false
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, false
	}
	return Size(r.Num().Int64()), true
}

// digits reports whether s is a non-empty run of ASCII digits.
func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
