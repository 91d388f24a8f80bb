// Command echobench compares unary echo RPC stacks on one host (loopback TCP
// and UDP, and a Unix socket for axon-uds).
//
//	go run ./cmd/echobench [-callers 1,16,100] [-duration 3s] [-warmup 1s]
//	    [-payload 1024] [-impls axon,axon-uds,axon-quic,raw-mux,grpc] [-runs 1] [-json]
//	go run ./cmd/echobench -mode stream [-streams bidi,download] [-duration 3s]
//	    [-warmup 1s] [-payload 1024] [-impls axon,axon-grpc,grpc] [-runs 1] [-json]
//
// For every caller count, run and impl it starts the server as a separate
// process (this binary re-executed with `-serve IMPL -addr 127.0.0.1:0`),
// drives it from this process with N closed-loop callers, and stops it
// afterwards. With -mode stream it measures messages per second over one
// long stream instead (see stream.go). The children inherit AXON_BENCH_STATE_DIR, a temporary
// directory this process creates (unless it is set already) and removes at
// the end. See README.md for how to read the output.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/axonrpc/axon/bench/impl"
)

type config struct {
	mode     string   // "unary" or "stream"
	patterns []string // stream mode: "bidi", "download"
	callers  []int
	duration time.Duration
	warmup   time.Duration
	payload  int
	impls    []impl.Impl
	runs     int
	json     bool
	profDir  string // -cpuprofile: a directory for one client and one server profile per point
}

func main() {
	// Hidden server mode, used only by the parent when it re-executes itself.
	if len(os.Args) > 1 && (os.Args[1] == "-serve" || os.Args[1] == "--serve") {
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		name := fs.String("serve", "", "impl to serve")
		addr := fs.String("addr", "127.0.0.1:0", "listen address")
		prof := fs.String("cpuprofile", "", "write the server's CPU profile to this file")
		fs.Parse(os.Args[1:]) //nolint:errcheck // ExitOnError
		os.Exit(serveChild(*name, *addr, *prof))
	}

	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if err != errUsage {
			fmt.Fprintln(os.Stderr, "echobench:", err)
		}
		os.Exit(2)
	}
	if !run(cfg) {
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var names []string
	for _, im := range impl.All() {
		names = append(names, im.Name())
	}
	fs := flag.NewFlagSet("echobench", flag.ContinueOnError)
	callers := fs.String("callers", "1,16,100", "comma-separated caller counts (concurrent closed-loop goroutines)")
	duration := fs.Duration("duration", 3*time.Second, "measured time per point")
	warmup := fs.Duration("warmup", time.Second, "unmeasured load before each point's measurement")
	payload := fs.Int("payload", 1024, "payload size in bytes")
	impls := fs.String("impls", strings.Join(names, ","), "comma-separated impls to run")
	runs := fs.Int("runs", 1, "repeat each point this many times and report the run with the median QPS")
	asJSON := fs.Bool("json", false, "write results as JSON on stdout (tables go to stderr)")
	profDir := fs.String("cpuprofile", "", "write CPU profiles of every point to this directory: IMPL-POINT-runN-client.pprof (the measured window) and -server.pprof (the server child's life)")
	mode := fs.String("mode", "unary", "unary: closed-loop unary calls; stream: message throughput over one long stream")
	streams := fs.String("streams", "bidi,download", "stream mode: patterns to run (bidi: echo over one bidirectional stream; download: one server-streaming call)")
	if err := fs.Parse(args); err != nil {
		return config{}, errUsage
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	cfg := config{mode: *mode, duration: *duration, warmup: *warmup, payload: *payload, runs: *runs, json: *asJSON, profDir: *profDir}
	switch cfg.mode {
	case "unary":
		if set["streams"] {
			return cfg, fmt.Errorf("-streams needs -mode stream")
		}
	case "stream":
		if set["callers"] {
			return cfg, fmt.Errorf("-callers does not apply to -mode stream (one stream per point)")
		}
		*callers = "1"
		if !set["impls"] {
			var sn []string
			for _, im := range impl.Streamers() {
				sn = append(sn, im.Name())
			}
			*impls = strings.Join(sn, ",")
		}
		for _, s := range strings.Split(*streams, ",") {
			s = strings.TrimSpace(s)
			if s != patternBidi && s != patternDownload {
				return cfg, fmt.Errorf("unknown -streams entry %q (want %s or %s)", s, patternBidi, patternDownload)
			}
			cfg.patterns = append(cfg.patterns, s)
		}
	default:
		return cfg, fmt.Errorf("-mode must be unary or stream, not %q", cfg.mode)
	}
	for _, s := range strings.Split(*callers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("bad -callers entry %q", s)
		}
		cfg.callers = append(cfg.callers, n)
	}
	for _, s := range strings.Split(*impls, ",") {
		s = strings.TrimSpace(s)
		im, ok := impl.Lookup(s)
		if !ok {
			return cfg, fmt.Errorf("unknown impl %q (registered: %s)", s, strings.Join(names, ","))
		}
		if _, ok := im.(impl.Streamer); !ok && cfg.mode == "stream" {
			return cfg, fmt.Errorf("impl %q has no streaming client (-mode stream runs: %s)", s, strings.Join(streamerNames(), ","))
		}
		cfg.impls = append(cfg.impls, im)
	}
	switch {
	case cfg.duration <= 0:
		return cfg, fmt.Errorf("-duration must be positive")
	case cfg.warmup < 0:
		return cfg, fmt.Errorf("-warmup must not be negative")
	case cfg.payload < 0:
		return cfg, fmt.Errorf("-payload must not be negative")
	case cfg.runs < 1:
		return cfg, fmt.Errorf("-runs must be at least 1")
	}
	return cfg, nil
}

// run executes every point and reports; false if any point failed.
func run(cfg config) bool {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "echobench:", err)
		return false
	}
	// Before any child starts, so that every child inherits it.
	if cfg.profDir != "" {
		if err := os.MkdirAll(cfg.profDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "echobench:", err)
			return false
		}
	}
	cleanup, err := impl.Setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "echobench: state directory:", err)
		return false
	}
	defer cleanup()
	payload := make([]byte, cfg.payload)
	for i := range payload {
		payload[i] = byte(i*7 + 1)
	}

	out := io.Writer(os.Stdout)
	if cfg.json {
		out = os.Stderr
	}
	env := environment{
		Mode:       cfg.mode,
		Date:       time.Now().Format(time.RFC3339),
		GoVersion:  runtime.Version(),
		GOOS:       runtime.GOOS,
		GOARCH:     runtime.GOARCH,
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GRPC:       grpc.Version,
		PayloadB:   cfg.payload,
		Duration:   cfg.duration.String(),
		Warmup:     cfg.warmup.String(),
		Runs:       cfg.runs,
	}
	if cfg.mode == "stream" {
		return runStreams(exe, cfg, env, payload, out)
	}
	printHeader(out, env)

	allOK := true
	var rows []row
	for _, callers := range cfg.callers {
		byImpl := make(map[string][]pointResult)
		for r := range cfg.runs {
			for _, im := range cfg.impls {
				fmt.Fprintf(os.Stderr, "  %-14s callers=%-4d run %d/%d ... ", im.Name(), callers, r+1, cfg.runs)
				res := runPoint(exe, im, callers, cfg, payload, cfg.profPrefix(fmt.Sprintf("%s-c%d-run%d", im.Name(), callers, r+1)))
				if res.ok() {
					fmt.Fprintf(os.Stderr, "%s qps, p99 %s\n", fmtQPS(res.QPS), fmtDur(res.P99))
				} else {
					fmt.Fprintf(os.Stderr, "FAILED (%d errors): %s\n", res.Errors, res.Err)
				}
				byImpl[im.Name()] = append(byImpl[im.Name()], res)
			}
		}
		var table []row
		for _, im := range cfg.impls {
			rw := pick(byImpl[im.Name()])
			if rw.Err != "" {
				allOK = false
			}
			table = append(table, rw)
		}
		addRatios(table)
		printTable(out, callers, cfg, table)
		rows = append(rows, table...)
	}
	if cfg.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Env    environment `json:"env"`
			Points []row       `json:"points"`
		}{env, rows}); err != nil {
			fmt.Fprintln(os.Stderr, "echobench:", err)
			return false
		}
	}
	return allOK
}

// profPrefix is the path prefix of a point's CPU profiles, or "" when
// -cpuprofile is not set.
func (cfg config) profPrefix(point string) string {
	if cfg.profDir == "" {
		return ""
	}
	return filepath.Join(cfg.profDir, point)
}

// pick reduces the runs of one point to the run with the median QPS (the
// upper median for an even count). If any run failed, the point failed.
func pick(runs []pointResult) row {
	var errs uint64
	qps := make([]float64, 0, len(runs))
	var failed *pointResult
	for i := range runs {
		errs += runs[i].Errors
		qps = append(qps, runs[i].QPS)
		if !runs[i].ok() && failed == nil {
			failed = &runs[i]
		}
	}
	var chosen pointResult
	if failed != nil {
		chosen = *failed
	} else {
		sorted := slices.Clone(runs)
		slices.SortFunc(sorted, func(a, b pointResult) int {
			switch {
			case a.QPS < b.QPS:
				return -1
			case a.QPS > b.QPS:
				return 1
			}
			return 0
		})
		chosen = sorted[len(sorted)/2]
	}
	rw := newRow(chosen)
	rw.Errors = errs
	rw.RunQPS = qps
	return rw
}
