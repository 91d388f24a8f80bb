package native_test

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
)

// settledGoroutines waits until the goroutine count is at most limit (when
// limit > 0) and returns it; it gives up after waitLimit.
func settledGoroutines(limit int) int {
	deadline := time.Now().Add(waitLimit)
	for {
		runtime.GC()
		g := runtime.NumGoroutine()
		if limit == 0 || g <= limit || time.Now().After(deadline) {
			return g
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStreamGoroutinesEndWithConnections: streams on several connections
// start the stream writer goroutines on both sides; once the clients are
// closed and the server shut down, the writer goroutines are gone (the
// idle timeout is set to an hour, so they ended because their connection
// did) and the goroutine count is back to its baseline. The streams'
// messages, of sizes around the receive buffer classes, arrive intact.
func TestStreamGoroutinesEndWithConnections(t *testing.T) {
	defer native.SetWriterIdle(time.Hour)()
	baseLoops := native.WriterLoops()
	baseG := settledGoroutines(0)

	codec := fpCodec{}
	f := start(t, native.DefaultConfig(), codec, codec)
	clients := []*kernel.Client{f.client}
	for range 3 {
		c, err := kernel.NewClient(kernel.ClientOptions{
			Target:     "tcp://" + f.addr,
			Transports: map[string]kernel.Transport{"tcp": f.tr},
			Protocol:   native.New(native.DefaultConfig()),
			Codec:      codec,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		clients = append(clients, c)
	}
	var texts []string
	for i, n := range []int{0, 1, 15, 16, 17, 100, 1023, 1024, 1025, 5000, 64 << 10, 70000} {
		texts = append(texts, strings.Repeat(string(rune('a'+i)), n))
	}
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	errs := make(chan error, len(clients)*3)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cf := &fixture{client: c}
			for range 5 {
				got, err := cf.chat(ctx, texts...)
				if err == nil && len(got) != len(texts) {
					err = fmt.Errorf("chat: %d echoes of %d", len(got), len(texts))
				}
				for i := range got {
					if err == nil && got[i] != texts[i] {
						err = fmt.Errorf("chat: echo %d is %d bytes %.8q..., want %d bytes %.8q...", i, len(got[i]), got[i], len(texts[i]), texts[i])
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
			// A server stream read for a while, then cancelled.
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			st, err := kernel.OpenServerStream[msg, msg](sctx, c, "/t.S/Flood", &msg{S: strings.Repeat("f", 1000)})
			if err != nil {
				errs <- err
				return
			}
			for range 2000 {
				m, err := st.Recv()
				if err == nil && len(m.S) != 1000 {
					err = fmt.Errorf("flood: message of %d bytes", len(m.S))
				}
				if err != nil {
					errs <- err
					return
				}
			}
			cancel()
			for {
				// Messages already queued may still arrive; then the end.
				if _, err := st.Recv(); err != nil {
					if err == io.EOF {
						errs <- fmt.Errorf("flood ended with OK after its cancellation")
					}
					break
				}
			}
			var out msg
			if err := c.Invoke(ctx, "/t.S/Echo", &msg{S: "unary"}, &out); err != nil || out.S != "unary" {
				errs <- fmt.Errorf("echo: %q, %v", out.S, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		go func() {
			for range f.svc.flooded { // unblock the flood handlers
			}
		}()
		return
	}
	// Both sides sent stream messages: writer goroutines run on both.
	if n := native.WriterLoops() - baseLoops; n < 2 {
		t.Fatalf("%d stream writer goroutines while streams ran; want at least 2", n)
	}
	<-f.svc.flooded // the handlers of the cancelled floods end
	for range len(clients) - 1 {
		<-f.svc.flooded
	}

	for _, c := range clients {
		c.Close()
	}
	f.stop()
	const slack = 2 // the runtime's own goroutines vary a little
	g := settledGoroutines(baseG + slack)
	deadline := time.Now().Add(waitLimit)
	for native.WriterLoops() > baseLoops && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := native.WriterLoops() - baseLoops; n > 0 {
		t.Errorf("%d stream writer goroutines left after the connections closed", n)
	}
	if g > baseG+slack {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the connections closed; baseline %d\n%s", g, baseG, buf[:runtime.Stack(buf, true)])
	}
}
