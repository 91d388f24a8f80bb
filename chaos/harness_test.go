package chaos

// The harness: the server child process, its RSS, the legitimate load and
// its latency statistics, and the record of attacker connections.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
)

// The opt-in: scenarios run only when this variable is "1". (Not AXON_*:
// the config loader reads those as config overrides.)
const optIn = "CHAOS"

const (
	echoSay = "/axon.example.v1.Echo/Say"

	// Source addresses on loopback: attackers dial from the default
	// (127.0.0.1), the legitimate clients from their own addresses, so
	// that max_connections_per_ip caps the attackers and not them.
	legitAxonIP = "127.0.0.2"
	legitGRPCIP = "127.0.0.3"
)

// Phases of a scenario.
const (
	baselineFor = 5 * time.Second
	attackFor   = 20 * time.Second
	settleFor   = 10 * time.Second // after the attackers closed, before RSS "after"
)

// binary is the axon command built once per test run (TestMain).
var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// requireOptIn skips the test unless CHAOS=1.
func requireOptIn(t *testing.T) {
	t.Helper()
	if os.Getenv(optIn) != "1" {
		t.Skipf("chaos scenarios are opt-in: set %s=1 (make chaos)", optIn)
	}
}

// axonBinary builds ./cmd/axon into a temporary directory, once.
func axonBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "axon-chaos-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "axon")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/axonrpc/axon/cmd/axon")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/axon: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// raiseNoFile lifts this process's RLIMIT_NOFILE soft limit to the hard
// one; the server child inherits it.
func raiseNoFile(t *testing.T) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Logf("getrlimit: %v", err)
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Logf("setrlimit: %v", err)
		}
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}

// baseLimits are server.limits of every scenario: small timeouts, so that
// an attack is cut quickly. A scenario overrides or adds keys.
func baseLimits() map[string]string {
	return map[string]string{
		"request_timeout":        "1s",
		"write_timeout":          "2s",
		"idle_timeout":           "2s",
		"handshake_timeout":      "2s",
		"control_frame_rate":     "200",
		"max_conn_buffered":      "1MiB",
		"max_buffered":           "128MiB",
		"max_connections_per_ip": "1000",
	}
}

// configYAML is the server's config: one TCP listener on a free loopback
// port with every protocol, plaintext, a static registry.
func configYAML(limits map[string]string) string {
	keys := make([]string, 0, len(limits))
	for k := range limits {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(`service: echo
listen:
  - transport: tcp
    address: "127.0.0.1:0"
    protocols: [axon, grpc, grpc-web]
tls:
  mode: "off"
registry:
  use: static
  options: {endpoints: {}}
server:
  codecs: [proto, binary, json]
  drain_timeout: 2s
  limits:
`)
	for _, k := range keys {
		fmt.Fprintf(&b, "    %s: %s\n", k, limits[k])
	}
	b.WriteString("log:\n  level: info\n  format: text\n")
	return b.String()
}

// server is the `axon serve` child process.
type server struct {
	cmd    *exec.Cmd
	pid    int
	addr   string // host:port
	stderr *lockedBuffer
	exited chan struct{}
	// liveHeap is the heap marked live by the server's last GC, in bytes,
	// from its GODEBUG=gctrace=1 lines: unlike RSS, it does not include
	// memory the Go runtime freed but has not returned to the system yet.
	liveHeap atomic.Int64
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // keep the first MiB
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	listeningRE = regexp.MustCompile(`endpoint=tcp://([0-9.]+:[0-9]+)`)
	gctraceRE   = regexp.MustCompile(`^gc \d+ @.* (\d+)->(\d+)->(\d+) MB`)
)

// startServer writes the config and starts `axon serve`, and returns once
// it logged its listening address (the "listening" line, at level info).
func startServer(t *testing.T, limits map[string]string) *server {
	t.Helper()
	bin := axonBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "axon.yaml")
	if err := os.WriteFile(cfg, []byte(configYAML(limits)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--watch=false", "--config", cfg)
	cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	s := &server{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	s.pid = cmd.Process.Pid
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := gctraceRE.FindStringSubmatch(line); m != nil {
				live, _ := strconv.ParseInt(m[3], 10, 64)
				s.liveHeap.Store(live << 20)
				continue
			}
			s.stderr.Write([]byte(line + "\n"))
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)
	select {
	case s.addr = <-addrc:
	case <-s.exited:
		t.Fatalf("axon serve exited: %v\n%s", cmd.ProcessState, s.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("axon serve did not log its address\n%s", s.stderr.String())
	}
	return s
}

// alive reports whether the server process still runs.
func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits; SIGKILL after 5 s.
func (s *server) stop() {
	if !s.alive() {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// procStats is what /proc tells about the server.
type procStats struct {
	rss     int64 // bytes
	heap    int64 // live heap after the last GC, bytes
	threads int
	fds     int
}

func (s *server) stats() procStats {
	p := procStats{heap: s.liveHeap.Load()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return p
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			p.rss = kb << 10
		case "Threads:":
			p.threads, _ = strconv.Atoi(f[1])
		}
	}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid)); err == nil {
		p.fds = len(ents)
	}
	return p
}

// settledStats samples the server's stats every 100 ms for d and returns
// the sample with the least RSS. The legitimate load keeps allocating, so
// the heap swings between collections by up to its live size; the least
// RSS over a few collections is what the process keeps, measured the same
// way for the baseline and after the attack.
func (s *server) settledStats(d time.Duration) procStats {
	best := s.stats()
	for end := time.Now().Add(d); time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
		if p := s.stats(); p.rss < best.rss {
			best = p
		}
	}
	return best
}

// settleSample is how long settledStats samples.
const settleSample = 2 * time.Second

// peakSampler samples the server's stats until stopped and keeps the
// maxima.
type peakSampler struct {
	stop chan struct{}
	done chan struct{}
	peak procStats
}

func samplePeaks(s *server, every time.Duration) *peakSampler {
	p := &peakSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			st := s.stats()
			p.peak.rss = max(p.peak.rss, st.rss)
			p.peak.heap = max(p.peak.heap, st.heap)
			p.peak.threads = max(p.peak.threads, st.threads)
			p.peak.fds = max(p.peak.fds, st.fds)
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *peakSampler) finish() procStats {
	close(p.stop)
	<-p.done
	return p.peak
}

func mb(n int64) string { return fmt.Sprintf("%.1fMB", float64(n)/(1<<20)) }

// ---------------------------------------------------------------------
// Legitimate load.

// sample is one legitimate call.
type sample struct {
	client string // "axon" or "grpc-go"
	start  time.Time
	lat    time.Duration
	err    error
}

// legitLoad runs closed-loop callers until stopped.
type legitLoad struct {
	mu      sync.Mutex
	samples []sample
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closers []func()
}

// dialFrom is a kernel.Transport that dials TCP from a given local IP.
type dialFrom struct{ ip string }

func (d dialFrom) Listen(context.Context, string) (net.Listener, error) {
	return nil, fmt.Errorf("chaos: dial-only transport")
}

func (d dialFrom) Dial(ctx context.Context, address string) (net.Conn, error) {
	nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(d.ip)}}
	c, err := nd.DialContext(ctx, "tcp", address)
	if err == nil {
		c.(*net.TCPConn).SetNoDelay(true)
	}
	return c, err
}

const callTimeout = 5 * time.Second

// startLegit starts 8 goroutines calling Echo/Say with Axon's client over
// the native protocol and, if withGRPC, 4 more with grpc-go.
func startLegit(t *testing.T, addr string, withGRPC bool) *legitLoad {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &legitLoad{cancel: cancel}
	ac, err := kernel.NewClient(kernel.ClientOptions{
		Target:     "tcp://" + addr,
		Transports: map[string]kernel.Transport{"tcp": dialFrom{legitAxonIP}},
		Protocol:   native.New(native.DefaultConfig()),
		Codec:      protocodec.Codec{},
	})
	if err != nil {
		t.Fatal(err)
	}
	l.closers = append(l.closers, func() { ac.Close() })
	for i := range 8 {
		l.run(ctx, "axon", func(ctx context.Context) error {
			var resp echopb.SayResponse
			return ac.Invoke(ctx, echoSay, &echopb.SayRequest{Text: fmt.Sprintf("legit %d", i)}, &resp)
		})
	}
	if withGRPC {
		gc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(dialFrom{legitGRPCIP}.Dial))
		if err != nil {
			t.Fatal(err)
		}
		l.closers = append(l.closers, func() { gc.Close() })
		for i := range 4 {
			l.run(ctx, "grpc-go", func(ctx context.Context) error {
				var resp echopb.SayResponse
				return gc.Invoke(ctx, echoSay, &echopb.SayRequest{Text: fmt.Sprintf("legit grpc %d", i)}, &resp)
			})
		}
	}
	return l
}

func (l *legitLoad) run(ctx context.Context, client string, call func(context.Context) error) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			start := time.Now()
			err := call(cctx)
			lat := time.Since(start)
			cancel()
			l.mu.Lock()
			l.samples = append(l.samples, sample{client: client, start: start, lat: lat, err: err})
			l.mu.Unlock()
		}
	}()
}

// stop ends the load; calls in flight finish first (a call that began
// before stop counts).
func (l *legitLoad) stop() {
	l.cancel()
	l.wg.Wait()
	for _, c := range l.closers {
		c()
	}
}

// window summarises the calls that started in [from, to).
type window struct {
	calls, failed int
	p50, p99      time.Duration
	errs          map[string]int // error text -> count (first few kinds)
}

func (l *legitLoad) window(from, to time.Time) window {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := window{errs: map[string]int{}}
	var lats []time.Duration
	for _, s := range l.samples {
		if s.start.Before(from) || !s.start.Before(to) {
			continue
		}
		w.calls++
		if s.err != nil {
			w.failed++
			k := s.client + ": " + s.err.Error()
			if len(k) > 160 {
				k = k[:160]
			}
			if _, ok := w.errs[k]; ok || len(w.errs) < 5 {
				w.errs[k]++
			}
			continue
		}
		lats = append(lats, s.lat)
	}
	w.p50, w.p99 = quantile(lats, 0.50), quantile(lats, 0.99)
	return w
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*q+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// ---------------------------------------------------------------------
// Attacker connections.

// connRec is one attacker connection: when it opened and when the server
// closed it (zero while open, or if the attacker closed it first).
type connRec struct {
	opened time.Time
	mu     sync.Mutex
	closed time.Time
}

// serverClosed records that the server closed the connection (the first
// call wins).
func (r *connRec) serverClosed() {
	r.mu.Lock()
	if r.closed.IsZero() {
		r.closed = time.Now()
	}
	r.mu.Unlock()
}

func (r *connRec) closedAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// conns records every attacker connection of a scenario.
type conns struct {
	mu         sync.Mutex
	recs       []*connRec
	dialFailed int
	lastDial   string
}

func (c *conns) add() *connRec {
	r := &connRec{opened: time.Now()}
	c.mu.Lock()
	c.recs = append(c.recs, r)
	c.mu.Unlock()
	return r
}

func (c *conns) dialError(err error) {
	c.mu.Lock()
	c.dialFailed++
	c.lastDial = err.Error()
	c.mu.Unlock()
}

// connSummary is what the scenario reports about attacker connections as
// of end (the moment the attack stopped).
type connSummary struct {
	total, closedByServer, openAtEnd, overdue int
	maxLife, medianLife                       time.Duration // of those the server closed
	oldestOpen                                time.Duration // age at end of the oldest still open
	dialFailed                                int
	lastDialErr                               string
}

func (c *conns) summary(end time.Time, bound time.Duration) connSummary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := connSummary{total: len(c.recs), dialFailed: c.dialFailed, lastDialErr: c.lastDial}
	var lives []time.Duration
	for _, r := range c.recs {
		closed := r.closedAt()
		if closed.IsZero() || closed.After(end) {
			age := end.Sub(r.opened)
			s.openAtEnd++
			s.oldestOpen = max(s.oldestOpen, age)
			if age > bound {
				s.overdue++
			}
			continue
		}
		life := closed.Sub(r.opened)
		s.closedByServer++
		lives = append(lives, life)
		if life > bound {
			s.overdue++
		}
	}
	if len(lives) > 0 {
		s.maxLife, s.medianLife = quantile(lives, 1), quantile(lives, 0.5)
	}
	return s
}

// attackEnv is what an attacker gets: the server's address and the record
// of its connections. An attacker runs until ctx is done, then closes all
// its connections before it returns.
type attackEnv struct {
	addr  string
	conns *conns
	logf  func(string, ...any)
}

// dial opens an attacker connection (from 127.0.0.1) and records it.
func (e *attackEnv) dial(ctx context.Context) (net.Conn, *connRec, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", e.addr)
	if err != nil {
		if ctx.Err() == nil {
			e.conns.dialError(err)
		}
		return nil, nil, err
	}
	return c, e.conns.add(), nil
}

// fleet keeps n attacker connections running: each worker runs one
// connection at a time with attack, and opens the next when the server
// closes it, until ctx is done. attack returns when the connection is
// closed (by the server, or because ctx is done); fleet closes it.
func (e *attackEnv) fleet(ctx context.Context, n, dialers int, attack func(ctx context.Context, c net.Conn, r *connRec)) {
	var wg sync.WaitGroup
	// Limit how many dials run at once, so that thousands of workers do
	// not all dial in the same millisecond.
	sem := make(chan struct{}, dialers)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				c, r, err := e.dial(ctx)
				<-sem
				if err != nil {
					sleepCtx(ctx, 100*time.Millisecond)
					continue
				}
				// Close it when ctx is done, whatever attack is doing.
				stop := context.AfterFunc(ctx, func() { c.Close() })
				attack(ctx, c, r)
				stop()
				c.Close()
			}
		}()
	}
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// watchRead reads and discards everything the server sends; when the
// read fails before ctx is done the server closed (or reset) the
// connection. It returns a channel closed at that moment.
func watchRead(ctx context.Context, c net.Conn, r *connRec) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				if ctx.Err() == nil {
					r.serverClosed()
				}
				return
			}
		}
	}()
	return gone
}
