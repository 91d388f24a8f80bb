package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/fx"
	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/kernel/status"
)

// load runs `axon load`: concurrency callers call the method in a closed
// loop for duration, through the same client stack as `axon call`. It
// prints a line a second and a summary, and exits 1 if any call failed.
func load(args []string, stdout, stderr io.Writer, services []fx.Option) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (YAML)")
	target := fs.String("target", "", "service name or endpoint address (default: the config's service)")
	duration := fs.Duration("duration", 10*time.Second, "how long to call")
	concurrency := fs.Int("concurrency", 8, "callers, each with one call in flight")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of each call")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() != 2 || *concurrency < 1 || *duration <= 0 {
		fmt.Fprint(stderr, "axon load: want --config FILE [--duration D] [--concurrency N>=1] METHOD JSON\n")
		return 2
	}
	cs, code := setupCall("load", *path, *target, fs.Arg(0), fs.Arg(1), false, stderr, services)
	if cs == nil {
		return code
	}
	defer cs.close()

	var calls, failed atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr atomic.Value
	end := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				resp := cs.method.NewResponse().(proto.Message)
				ctx, cancel := context.WithTimeout(context.Background(), *timeout)
				start := time.Now()
				err := cs.client.Invoke(ctx, cs.method.FullName, cs.req, resp)
				mine = append(mine, time.Since(start))
				cancel()
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					se := status.FromError(err)
					firstErr.CompareAndSwap(nil, se.Code().String()+": "+se.Message())
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-tick.C:
			n := calls.Load()
			fmt.Fprintf(stdout, "%s  %6d calls/s  %d failed so far\n", time.Now().Format("15:04:05"), n-last, failed.Load())
			last = n
		}
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(f*float64(len(lat))))].Round(time.Microsecond)
	}
	fmt.Fprintf(stdout, "calls %d, failed %d, p50 %v, p99 %v, max %v\n", calls.Load(), failed.Load(), q(0.5), q(0.99), q(1))
	if failed.Load() > 0 {
		fmt.Fprintf(stdout, "first failure: %v\n", firstErr.Load())
		return 1
	}
	return 0
}
