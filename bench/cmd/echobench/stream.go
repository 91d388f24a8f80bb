package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/axonrpc/axon/bench/impl"
)

// Stream patterns (-streams).
const (
	// patternBidi: ONE bidirectional stream; the client sends payload
	// messages on one goroutine as fast as flow control allows and reads
	// the server's echoes on another.
	patternBidi = "bidi"
	// patternDownload: ONE server-streaming call; the server sends payload
	// messages as fast as flow control allows until the client cancels.
	patternDownload = "download"
)

func streamerNames() []string {
	var names []string
	for _, im := range impl.Streamers() {
		names = append(names, im.Name())
	}
	return names
}

// streamResult is one measured (impl, pattern, run) point.
type streamResult struct {
	Impl    string
	Pattern string
	Msgs    uint64        // messages received by the client in the window
	Elapsed time.Duration // length of the measured window
	Rate    float64       // Msgs per second
	Err     string        // why the point failed; empty if it succeeded
}

func (r streamResult) ok() bool { return r.Err == "" }

// runStreamPoint measures one impl on one pattern: the server in a child
// process (as for unary points), one client, ONE stream for warmup and
// window alike. Messages received in the window are counted; each one is
// checked against payload.
func runStreamPoint(exe string, im impl.Streamer, pattern string, cfg config, payload []byte, prof string) (res streamResult) {
	res.Impl, res.Pattern = im.Name(), pattern
	ctx, cancel := context.WithTimeout(context.Background(), cfg.warmup+cfg.duration+budgetSlack)
	defer cancel()

	srv, addr, err := startServer(ctx, exe, im.Name(), profFile(prof, "server"))
	if err != nil {
		res.Err = "start server: " + err.Error()
		return res
	}
	defer srv.stop()

	cl, err := im.DialStream(addr)
	if err != nil {
		res.Err = "dial: " + err.Error()
		return res
	}
	closeClient := sync.OnceFunc(func() { cl.Close() })
	defer closeClient()

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	var st impl.Stream
	switch pattern {
	case patternBidi:
		st, err = cl.Bidi(sctx)
	case patternDownload:
		st, err = cl.Download(sctx, payload, 0) // until cancelled
	default:
		err = fmt.Errorf("unknown pattern %q", pattern)
	}
	if err != nil {
		res.Err = "open stream: " + err.Error()
		return res
	}

	var (
		received atomic.Uint64 // messages received and checked
		stopping atomic.Bool   // set when the window ends: an end of the call is expected
		failOnce sync.Once
		failErr  error
		failed   = make(chan struct{})
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		failOnce.Do(func() {
			failErr = err
			close(failed)
		})
	}
	if pattern == patternBidi {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopping.Load() {
				if err := st.Send(payload); err != nil {
					if !stopping.Load() {
						fail(fmt.Errorf("send: %w", err))
					}
					return
				}
			}
			// The server echoes what is still in flight, then ends the
			// call; the receiver reads to io.EOF.
			if err := st.CloseSend(); err != nil {
				fail(fmt.Errorf("close send: %w", err))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			got, err := st.Recv()
			if err != nil {
				switch {
				case pattern == patternBidi && err == io.EOF && stopping.Load():
					// The end of a bidi stream after CloseSend.
				case pattern == patternDownload && stopping.Load():
					// The download this side cancelled.
				case err == io.EOF:
					fail(errors.New("the server ended the stream before the window ended"))
				default:
					fail(fmt.Errorf("recv: %w", err))
				}
				return
			}
			if !bytes.Equal(got, payload) {
				fail(fmt.Errorf("echo mismatch: got %d bytes, want %d bytes", len(got), len(payload)))
				return
			}
			received.Add(1)
		}
	}()

	// Warm up, then count the window; a failure or the budget ends either.
	timer := time.NewTimer(cfg.warmup)
	defer timer.Stop()
	aborted := false
	wait := func() {
		select {
		case <-timer.C:
		case <-failed:
			aborted = true
		case <-ctx.Done():
			aborted = true
		}
	}
	wait()
	stopProf := startClientProfile(prof)
	n0, start := received.Load(), time.Now()
	if !aborted {
		timer.Reset(cfg.duration)
		wait()
	}
	n1 := received.Load()
	res.Elapsed = time.Since(start)
	stopProf()
	stopping.Store(true)
	if pattern == patternDownload || aborted {
		scancel()
	}

	// Let the stream end; if it hangs, break the connection and kill the
	// server to unblock it.
	if !waitFor(&wg, drainTimeout) {
		scancel()
		closeClient()
		srv.kill()
		if !waitFor(&wg, drainTimeout) {
			res.Err = fmt.Sprintf("stream goroutines still blocked %v after the point ended", 2*drainTimeout)
			return res
		}
	}
	select {
	case <-failed:
		res.Err = failErr.Error()
	default:
	}
	if res.Err == "" && ctx.Err() != nil {
		res.Err = "point exceeded its time budget"
	}
	res.Msgs = n1 - n0
	if res.Err == "" && res.Msgs == 0 {
		res.Err = "no message received in the measured window"
	}
	if res.Elapsed > 0 {
		res.Rate = float64(res.Msgs) / res.Elapsed.Seconds()
	}
	return res
}

// streamRow is one reported (impl, pattern): medians over the runs.
type streamRow struct {
	Impl       string     `json:"impl"`
	Pattern    string     `json:"pattern"`
	MsgsPerSec float64    `json:"msgs_per_sec"` // median over runs
	MBPerSec   float64    `json:"mb_per_sec"`   // MsgsPerSec * payload / 1e6, one direction
	Ratio      *float64   `json:"ratio_vs_grpc,omitempty"`
	RunRates   []float64  `json:"run_msgs_per_sec"`
	RunRatios  []*float64 `json:"run_ratio_vs_grpc"`
	Err        string     `json:"error,omitempty"`
}

// runStreams runs every (pattern, run, impl) point, impls interleaved
// within a run, and reports one table per pattern; false if any point
// failed.
func runStreams(exe string, cfg config, env environment, payload []byte, out io.Writer) bool {
	printStreamHeader(out, env)
	allOK := true
	var rows []streamRow
	for _, pattern := range cfg.patterns {
		byImpl := make(map[string][]streamResult)
		for r := range cfg.runs {
			for _, im := range cfg.impls {
				fmt.Fprintf(os.Stderr, "  %-14s %-8s run %d/%d ... ", im.Name(), pattern, r+1, cfg.runs)
				res := runStreamPoint(exe, im.(impl.Streamer), pattern, cfg, payload, cfg.profPrefix(fmt.Sprintf("%s-%s-run%d", im.Name(), pattern, r+1)))
				if res.ok() {
					fmt.Fprintf(os.Stderr, "%s msgs/s\n", fmtQPS(res.Rate))
				} else {
					fmt.Fprintf(os.Stderr, "FAILED: %s\n", res.Err)
				}
				byImpl[im.Name()] = append(byImpl[im.Name()], res)
			}
		}
		table := streamTable(cfg, pattern, byImpl, len(payload))
		for _, rw := range table {
			if rw.Err != "" {
				allOK = false
			}
		}
		printStreamTable(out, pattern, table)
		rows = append(rows, table...)
	}
	if cfg.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Env     environment `json:"env"`
			Streams []streamRow `json:"streams"`
		}{env, rows}); err != nil {
			fmt.Fprintln(os.Stderr, "echobench:", err)
			return false
		}
	}
	return allOK
}

// streamTable reduces the runs: per impl the median rate, and the ratio to
// grpc's rate in the same run, per run and their median.
func streamTable(cfg config, pattern string, byImpl map[string][]streamResult, payloadB int) []streamRow {
	base := byImpl["grpc"]
	var table []streamRow
	for _, im := range cfg.impls {
		runs := byImpl[im.Name()]
		rw := streamRow{Impl: im.Name(), Pattern: pattern}
		var ratios []float64
		for i, res := range runs {
			rw.RunRates = append(rw.RunRates, res.Rate)
			var q *float64
			if res.ok() && i < len(base) && base[i].ok() {
				v := res.Rate / base[i].Rate
				q = &v
				ratios = append(ratios, v)
			}
			rw.RunRatios = append(rw.RunRatios, q)
			if !res.ok() && rw.Err == "" {
				rw.Err = fmt.Sprintf("run %d: %s", i+1, res.Err)
			}
		}
		if rw.Err == "" {
			rw.MsgsPerSec = median(rw.RunRates)
			rw.MBPerSec = rw.MsgsPerSec * float64(payloadB) / 1e6
			if len(ratios) == len(runs) {
				m := median(ratios)
				rw.Ratio = &m
			}
		}
		table = append(table, rw)
	}
	return table
}

// median is the middle value (the upper median for an even count).
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func printStreamHeader(w io.Writer, e environment) {
	fmt.Fprintf(w, "echobench -mode stream  %s  %s %s/%s  GOMAXPROCS=%d  NumCPU=%d  grpc %s\n",
		e.Date, e.GoVersion, e.GOOS, e.GOARCH, e.GOMAXPROCS, e.NumCPU, e.GRPC)
	fmt.Fprintf(w, "%d B messages over ONE stream, server in a child process on 127.0.0.1 (axon-uds: a Unix socket), %s measured after %s warmup, %d run(s)\n",
		e.PayloadB, e.Duration, e.Warmup, e.Runs)
	fmt.Fprintf(w, "msgs/s and MB/s (payload bytes, one direction, 1 MB = 1e6 B): median of runs; ratio: median of the runs' msgs/s / grpc msgs/s in the same run\n")
}

func printStreamTable(w io.Writer, pattern string, table []streamRow) {
	switch pattern {
	case patternBidi:
		fmt.Fprintf(w, "\nstream=bidi (client sends on one goroutine, reads the echoes on another; counted: echoes received)\n")
	case patternDownload:
		fmt.Fprintf(w, "\nstream=download (one server-streaming call; counted: messages received)\n")
	}
	width := len("impl")
	for _, r := range table {
		width = max(width, len(r.Impl))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tmsgs/s\tMB/s\tratio\tmsgs/s per run\tratio per run\t\n", width, "impl")
	for _, r := range table {
		var rates, ratios []string
		for i, v := range r.RunRates {
			rates = append(rates, fmtQPS(v))
			ratios = append(ratios, fmtRatio(r.RunRatios[i]))
		}
		if r.Err != "" {
			fmt.Fprintf(tw, "%-*s\t-\t-\t-\t%s\t%s\t\n", width, r.Impl, strings.Join(rates, " "), strings.Join(ratios, " "))
			continue
		}
		fmt.Fprintf(tw, "%-*s\t%s\t%.1f\t%s\t%s\t%s\t\n", width, r.Impl, fmtQPS(r.MsgsPerSec), r.MBPerSec,
			fmtRatio(r.Ratio), strings.Join(rates, " "), strings.Join(ratios, " "))
	}
	tw.Flush()
	for _, r := range table {
		if r.Err != "" {
			fmt.Fprintf(w, "  %s FAILED: %s\n", r.Impl, r.Err)
		}
	}
}
