package main

import (
	"strings"
	"testing"

	"github.com/axonrpc/axon/bench/impl"
)

func TestParseFlagsStream(t *testing.T) {
	cfg, err := parseFlags([]string{"-mode", "stream", "-duration", "2s"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.impls) != len(impl.Streamers()) {
		t.Errorf("default stream impls = %d, want every Streamer (%d)", len(cfg.impls), len(impl.Streamers()))
	}
	if strings.Join(cfg.patterns, ",") != "bidi,download" {
		t.Errorf("patterns = %v, want bidi,download", cfg.patterns)
	}

	cfg, err = parseFlags([]string{"-mode", "stream", "-streams", "download", "-impls", "axon,grpc"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.impls) != 2 || strings.Join(cfg.patterns, ",") != "download" {
		t.Errorf("impls %d, patterns %v; want 2 and download", len(cfg.impls), cfg.patterns)
	}

	for _, args := range [][]string{
		{"-mode", "stream", "-callers", "4"},
		{"-mode", "stream", "-impls", "raw-mux"},
		{"-mode", "stream", "-streams", "upload"},
		{"-streams", "bidi"},
		{"-mode", "batch"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) succeeded", args)
		}
	}
}

func TestStreamTable(t *testing.T) {
	axon, _ := impl.Lookup("axon")
	grpc, _ := impl.Lookup("grpc")
	cfg := config{impls: []impl.Impl{axon, grpc}}
	by := map[string][]streamResult{
		"axon": {{Rate: 50}, {Rate: 90}, {Rate: 60}},
		"grpc": {{Rate: 100}, {Rate: 100}, {Rate: 300}},
	}
	table := streamTable(cfg, patternBidi, by, 1000)
	a := table[0]
	if a.MsgsPerSec != 60 {
		t.Errorf("median msgs/s = %v, want 60", a.MsgsPerSec)
	}
	if a.MBPerSec != 0.06 {
		t.Errorf("MB/s = %v, want 0.06", a.MBPerSec)
	}
	// Per-run ratios 0.5, 0.9, 0.2: the median is 0.5, not 60/100.
	if a.Ratio == nil || *a.Ratio != 0.5 {
		t.Errorf("ratio = %v, want 0.5", a.Ratio)
	}
	if g := table[1]; g.Ratio == nil || *g.Ratio != 1 {
		t.Errorf("grpc ratio = %v, want 1", g.Ratio)
	}

	by["axon"][1].Err = "boom"
	table = streamTable(cfg, patternBidi, by, 1000)
	if table[0].Err == "" || table[0].Ratio != nil || table[0].RunRatios[1] != nil {
		t.Errorf("a failed run: row %+v, want failed with no ratio", table[0])
	}
}
