package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/bench/impl"
	"github.com/axonrpc/axon/bench/internal/hist"
)

// pointResult is one measured (impl, callers, run) point.
type pointResult struct {
	Impl    string
	Callers int
	Calls   uint64        // calls completed in the measured window
	Elapsed time.Duration // length of the measured window
	QPS     float64
	P50     time.Duration
	P99     time.Duration
	P999    time.Duration
	Mean    time.Duration
	Max     time.Duration
	Errors  uint64 // failed calls (before the point was aborted)
	Err     string // why the point failed; empty if it succeeded
}

func (r pointResult) ok() bool { return r.Err == "" }

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// Time limits around the load itself, so that every point is bounded.
const (
	startTimeout = 15 * time.Second // child start-up until its address line
	drainTimeout = 5 * time.Second  // in-flight calls finishing after the window
	budgetSlack  = 30 * time.Second // dial and the above, on top of warmup+duration
	stopGrace    = 3 * time.Second  // child's own shutdown (it removes what it created) before a kill
)

// serverProc is a server child process.
type serverProc struct {
	cmd   *exec.Cmd
	stdin *os.File // closing it tells the child to exit
	once  sync.Once
}

// startServer re-executes this binary as `-serve NAME -addr 127.0.0.1:0`
// (with `-cpuprofile PROF` if prof is set) and returns once the child
// printed its listen address.
func startServer(ctx context.Context, exe, name, prof string) (*serverProc, string, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, "", err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, "", err
	}
	defer outR.Close()
	args := []string{"-serve", name, "-addr", "127.0.0.1:0"}
	if prof != "" {
		args = append(args, "-cpuprofile", prof)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdin = inR
	cmd.Stdout = outW
	cmd.Stderr = os.Stderr
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		return nil, "", err
	}
	p := &serverProc{cmd: cmd, stdin: inW}

	line := make(chan string, 1)
	go func() {
		// Returns at the first line, or at EOF when the child exits
		// or when outR is closed below.
		s, _ := bufio.NewReader(outR).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case addr := <-line:
		if addr == "" {
			p.kill()
			return nil, "", fmt.Errorf("server %s exited without printing its address", name)
		}
		return p, addr, nil
	case <-timer.C:
		err = fmt.Errorf("server %s did not start within %v", name, startTimeout)
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.kill()
	return nil, "", err
}

// stop closes the child's stdin, which asks it to shut down (closing its
// server, which removes what the server created, such as axon-uds's socket
// directory), gives it stopGrace to exit, then kills it, and reaps it. Safe
// to call more than once, and together with kill.
func (p *serverProc) stop() { p.end(stopGrace) }

// kill kills the child at once and reaps it.
func (p *serverProc) kill() { p.end(0) }

func (p *serverProc) end(grace time.Duration) {
	p.once.Do(func() {
		p.stdin.Close()
		exited := make(chan struct{})
		go func() {
			p.cmd.Wait() //nolint:errcheck // exit status does not matter; it may be killed
			close(exited)
		}()
		if grace > 0 {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-exited:
				return
			case <-t.C:
			}
		}
		p.cmd.Process.Kill() //nolint:errcheck // may have exited already
		<-exited
	})
}

// worker is the state owned by one caller goroutine; nothing in it is
// shared while the load runs.
type worker struct {
	h    hist.Hist
	errs uint64
	err  error
}

// runPoint measures one impl at one caller count, with the server in a
// child process that is killed before runPoint returns, whatever happens.
func runPoint(exe string, im impl.Impl, callers int, cfg config, payload []byte, prof string) (res pointResult) {
	res.Impl, res.Callers = im.Name(), callers
	ctx, cancel := context.WithTimeout(context.Background(), cfg.warmup+cfg.duration+budgetSlack)
	defer cancel()

	srv, addr, err := startServer(ctx, exe, im.Name(), profFile(prof, "server"))
	if err != nil {
		res.Err = "start server: " + err.Error()
		return res
	}
	defer srv.stop()

	cl, err := im.Dial(addr, callers)
	if err != nil {
		res.Err = "dial: " + err.Error()
		return res
	}
	closeClient := sync.OnceFunc(func() { cl.Close() })
	defer closeClient()

	var (
		phase     atomic.Int32
		wg        sync.WaitGroup
		abortOnce sync.Once
		aborted   = make(chan struct{})
		workers   = make([]*worker, callers)
	)
	loadCtx, loadCancel := context.WithCancel(ctx)
	defer loadCancel()
	for i := range workers {
		w := new(worker)
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for phase.Load() != phaseStop {
				t0 := time.Now()
				err := cl.Call(loadCtx, payload)
				d := time.Since(t0)
				if err != nil {
					if phase.Load() != phaseStop && loadCtx.Err() == nil {
						w.errs++
						w.err = err
						abortOnce.Do(func() { close(aborted) })
					}
					return
				}
				if phase.Load() == phaseMeasure {
					w.h.Record(d)
				}
			}
		}()
	}

	// Warm up, then measure; a failed call or the time budget ends either.
	timer := time.NewTimer(cfg.warmup)
	defer timer.Stop()
	stopped := false
	wait := func() {
		select {
		case <-timer.C:
		case <-aborted:
			stopped = true
		case <-ctx.Done():
			stopped = true
		}
	}
	wait()
	phase.Store(phaseMeasure)
	stopProf := startClientProfile(prof)
	start := time.Now()
	if !stopped {
		timer.Reset(cfg.duration)
		wait()
	}
	phase.Store(phaseStop)
	stopProf()
	res.Elapsed = time.Since(start)
	if stopped {
		loadCancel() // fail the calls in flight rather than wait for them
	}

	// Let calls in flight finish; if they hang, break the connections and
	// kill the server to unblock them.
	if !waitFor(&wg, drainTimeout) {
		loadCancel()
		closeClient()
		srv.kill()
		if !waitFor(&wg, drainTimeout) {
			res.Err = fmt.Sprintf("callers still blocked %v after the point ended", 2*drainTimeout)
			return res
		}
	}

	var h hist.Hist
	for _, w := range workers {
		h.Merge(&w.h)
		res.Errors += w.errs
		if w.err != nil && res.Err == "" {
			res.Err = w.err.Error()
		}
	}
	if res.Err == "" && ctx.Err() != nil {
		res.Err = "point exceeded its time budget"
	}
	if res.Err == "" && h.Count() == 0 {
		res.Err = "no call completed in the measured window"
	}
	res.Calls = h.Count()
	if res.Elapsed > 0 {
		res.QPS = float64(res.Calls) / res.Elapsed.Seconds()
	}
	res.P50 = h.Quantile(0.50)
	res.P99 = h.Quantile(0.99)
	res.P999 = h.Quantile(0.999)
	res.Mean = h.Mean()
	res.Max = h.Max()
	return res
}

// waitFor waits for wg up to d and reports whether it finished.
func waitFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

var errUsage = errors.New("usage")

// profFile is prof's file for side ("client" or "server"), or "" when
// profiling is off.
func profFile(prof, side string) string {
	if prof == "" {
		return ""
	}
	return prof + "-" + side + ".pprof"
}

// startClientProfile starts this process's CPU profile into prof's client
// file, if prof is set, and returns the function that stops it. A profile
// that cannot be written is reported and skipped; the point still runs.
func startClientProfile(prof string) (stop func()) {
	if prof == "" {
		return func() {}
	}
	f, err := os.Create(profFile(prof, "client"))
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "echobench: cpu profile:", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
