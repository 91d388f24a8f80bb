package config_test

import (
	"math"
	"testing"

	"github.com/axonrpc/axon/kernel/config"
)

func TestSizeParse(t *testing.T) {
	cases := []struct {
		in   any
		want config.Size
		ok   bool
	}{
		{"4MiB", 4 << 20, true},
		{"512KiB", 512 << 10, true},
		{"64KB", 64000, true},
		{"1GiB", 1 << 30, true},
		{"2TiB", 2 << 40, true},
		{"3MB", 3e6, true},
		{"5GB", 5e9, true},
		{"1TB", 1e12, true},
		{"100B", 100, true},
		{"1024", 1024, true},
		{"0", 0, true},
		{"1.5KiB", 1536, true},
		{"0.5MiB", 512 << 10, true},
		{"8388607TiB", 8388607 << 40, true},
		{1024, 1024, true},
		{uint64(7), 7, true},
		{"8388608TiB", 0, false}, // overflows int64
		{"9223372036854775808", 0, false},
		{"0.3B", 0, false}, // not a whole number of bytes
		{"1.5", 0, false},
		{"4 MB", 0, false},
		{"4mib", 0, false},
		{"4Mi", 0, false},
		{"4M", 0, false},
		{"MiB", 0, false},
		{".5KiB", 0, false},
		{"1.KiB", 0, false},
		{"1.2.3KiB", 0, false},
		{"-1KiB", 0, false},
		{"+1", 0, false},
		{"", 0, false},
		{-1, 0, false},
		{2.0, 0, false},
		{true, 0, false},
	}
	for _, c := range cases {
		var v struct {
			S config.Size `yaml:"s"`
		}
		err := config.Decode(map[string]any{"s": c.in}, "", &v)
		if (err == nil) != c.ok || v.S != c.want {
			t.Errorf("%#v: got %d, %v; want %d, ok=%v", c.in, v.S, err, c.want, c.ok)
		}
	}
}

func TestSizeString(t *testing.T) {
	cases := []struct {
		in   config.Size
		want string
	}{
		{0, "0B"}, {100, "100B"}, {1023, "1023B"}, {1024, "1KiB"}, {4 << 20, "4MiB"}, {1 << 30, "1GiB"},
		{3 << 40, "3TiB"}, {1 << 50, "1024TiB"}, {64000, "64KB"}, {1536, "1536B"}, {1024000, "1000KiB"},
		{5e9, "5GB"}, {-2048, "-2KiB"}, {math.MinInt64, "-9223372036854775808B"},
	}
	for _, c := range cases {
		if got := c.in.String(); got != c.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(c.in), got, c.want)
		}
	}
	if got := config.Duration(1500e6).String(); got != "1.5s" {
		t.Errorf("Duration.String() = %q", got)
	}
}
