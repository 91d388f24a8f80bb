package e2e_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	local "github.com/axonrpc/axon/plugins/registry-local"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// dialLog is TCP whose dials are recorded: the address and the time.
type dialLog struct {
	kernel.Transport
	mu    sync.Mutex
	dials map[string]time.Time // first dial of each address
}

func (d *dialLog) Dial(ctx context.Context, addr string) (net.Conn, error) {
	d.mu.Lock()
	if _, ok := d.dials[addr]; !ok {
		d.dials[addr] = time.Now()
	}
	d.mu.Unlock()
	return d.Transport.Dial(ctx, addr)
}

func (d *dialLog) firstDial(addr string) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.dials[addr]
	return at, ok
}

// TestHandover: when a reload moves the server to a new address, the new
// endpoint is registered server.handover before the old one leaves, and a
// client following the registry connects to it in that time, before any
// call needs it. With handover 0 the move is immediate and calls still
// find the new endpoint.
func TestHandover(t *testing.T) {
	for _, tc := range []struct {
		name     string
		handover time.Duration
	}{
		{"300ms", 300 * time.Millisecond},
		{"off", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tr := &dialLog{Transport: tcp.New(tcp.DefaultConfig()), dials: map[string]time.Time{}}
			trFactory := kernel.NewFactory(kernel.KindTransport, "tcp", func() struct{} { return struct{}{} },
				func(kernel.BuildContext, struct{}) (kernel.Transport, error) { return tr, nil })
			rt, cat := newTestRuntime(t, trFactory, native.Factory, protocodec.Factory, local.Factory)
			conf := func() *kernel.Config {
				return parseConfig(t, fmt.Sprintf(`service: moving
tls: {mode: "off"}
listen: [{transport: tcp, address: "127.0.0.1:0"}]
registry: {use: local, options: {dir: %q, debounce: 5ms}}
server: {handover: %s}
`, dir, tc.handover))
			}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if err := rt.Apply(ctx, conf()); err != nil {
				t.Fatal(err)
			}
			client, err := kernel.BuildClient(cat, conf(), "moving", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			if got, err := say(ctx, client, mEcho, "before"); err != nil || got != "before" {
				t.Fatalf("call before the move: %q, %v", got, err)
			}

			// Port 0 again: the new generation listens on another port.
			start := time.Now()
			if err := rt.Apply(ctx, conf()); err != nil {
				t.Fatal(err)
			}
			applied := time.Since(start)
			if tc.handover > 0 {
				if applied < tc.handover {
					t.Fatalf("the move took %v, less than the handover of %v", applied, tc.handover)
				}
				// No call was made during the move: only the client's own
				// connecting ahead of calls dials the new address, and the
				// handover gives it the time to.
				_, addr := kernel.SplitAddress(rt.Endpoints()[0].Address)
				dialed, ok := tr.firstDial(addr)
				if !ok || dialed.Sub(start) > applied {
					t.Fatalf("the client did not connect to the new endpoint %s during the handover (dialed %v, at %v of a %v move)",
						addr, ok, dialed.Sub(start), applied)
				}
			}
			if got, err := say(ctx, client, mEcho, "after"); err != nil || got != "after" {
				t.Fatalf("call after the move: %q, %v", got, err)
			}
		})
	}
}
