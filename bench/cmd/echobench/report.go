package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// environment is printed above the tables and included in the JSON.
type environment struct {
	Mode       string `json:"mode"`
	Date       string `json:"date"`
	GoVersion  string `json:"go_version"`
	GOOS       string `json:"goos"`
	GOARCH     string `json:"goarch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GRPC       string `json:"grpc_version"`
	PayloadB   int    `json:"payload_bytes"`
	Duration   string `json:"duration"`
	Warmup     string `json:"warmup"`
	Runs       int    `json:"runs"`
}

// row is one reported point: the median run of an (impl, callers) pair.
type row struct {
	Impl     string    `json:"impl"`
	Callers  int       `json:"callers"`
	QPS      float64   `json:"qps"`
	P50us    float64   `json:"p50_us"`
	P99us    float64   `json:"p99_us"`
	P999us   float64   `json:"p999_us"`
	MeanUs   float64   `json:"mean_us"`
	MaxUs    float64   `json:"max_us"`
	Calls    uint64    `json:"calls"`
	Errors   uint64    `json:"errors"`
	Err      string    `json:"error,omitempty"`
	Ratio    *float64  `json:"ratio_vs_grpc,omitempty"`     // QPS / grpc QPS
	P99Ratio *float64  `json:"p99_ratio_vs_grpc,omitempty"` // p99 / grpc p99
	RunQPS   []float64 `json:"run_qps"`

	p50, p99 time.Duration
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func newRow(r pointResult) row {
	return row{
		Impl: r.Impl, Callers: r.Callers, QPS: r.QPS,
		P50us: us(r.P50), P99us: us(r.P99), P999us: us(r.P999), MeanUs: us(r.Mean), MaxUs: us(r.Max),
		Calls: r.Calls, Errors: r.Errors, Err: r.Err,
		p50: r.P50, p99: r.P99,
	}
}

// addRatios fills the ratios against the grpc row of the same table, if
// grpc ran and succeeded.
func addRatios(table []row) {
	var base *row
	for i := range table {
		if table[i].Impl == "grpc" && table[i].Err == "" && table[i].QPS > 0 && table[i].p99 > 0 {
			base = &table[i]
		}
	}
	if base == nil {
		return
	}
	for i := range table {
		if table[i].Err != "" {
			continue
		}
		q := table[i].QPS / base.QPS
		p := float64(table[i].p99) / float64(base.p99)
		table[i].Ratio, table[i].P99Ratio = &q, &p
	}
}

func printHeader(w io.Writer, e environment) {
	fmt.Fprintf(w, "echobench  %s  %s %s/%s  GOMAXPROCS=%d  NumCPU=%d  grpc %s\n",
		e.Date, e.GoVersion, e.GOOS, e.GOARCH, e.GOMAXPROCS, e.NumCPU, e.GRPC)
	fmt.Fprintf(w, "unary echo of %d B, server in a child process on 127.0.0.1 (axon-uds: a Unix socket), %s measured after %s warmup, median QPS of %d run(s)\n",
		e.PayloadB, e.Duration, e.Warmup, e.Runs)
}

func printTable(w io.Writer, callers int, cfg config, table []row) {
	fmt.Fprintf(w, "\ncallers=%d\n", callers)
	// Right-aligned columns; the impl column is padded to one width so it
	// reads left-aligned.
	width := len("impl")
	for _, r := range table {
		width = max(width, len(r.Impl))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tQPS\tp50\tp99\tratio\tp99 ratio\terrors\t\n", width, "impl")
	for _, r := range table {
		if r.Err != "" {
			fmt.Fprintf(tw, "%-*s\t-\t-\t-\t-\t-\t%d\t\n", width, r.Impl, r.Errors)
			continue
		}
		fmt.Fprintf(tw, "%-*s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", width, r.Impl, fmtQPS(r.QPS),
			fmtDur(r.p50), fmtDur(r.p99), fmtRatio(r.Ratio), fmtRatio(r.P99Ratio), r.Errors)
	}
	tw.Flush()
	for _, r := range table {
		if r.Err != "" {
			fmt.Fprintf(w, "  %s FAILED: %s\n", r.Impl, r.Err)
		}
	}
}

func fmtRatio(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *p)
}

func fmtQPS(q float64) string {
	if q >= 1000 {
		return fmt.Sprintf("%.1fk", q/1000)
	}
	return fmt.Sprintf("%.0f", q)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	}
}
