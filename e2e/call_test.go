package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// TestConcurrentCalls: many goroutines share a client's few connections and
// every response matches its own request.
func TestConcurrentCalls(t *testing.T) {
	srv := startServer(t, srvConf{})
	for _, conns := range []int{1, 2} {
		t.Run(fmt.Sprintf("conns=%d", conns), func(t *testing.T) {
			c := newClient(t, srv.addr(), conns)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			const goroutines, calls = 200, 5
			errs := make(chan error, goroutines)
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range calls {
						// Vary the size so that frames of different lengths interleave.
						want := fmt.Sprintf("g%d-c%d-%s", g, i, strings.Repeat("x", (g*calls+i)%300))
						got, err := say(ctx, c, mEcho, want)
						if err != nil {
							errs <- fmt.Errorf("call %d/%d: %w", g, i, err)
							return
						}
						if got != want {
							errs <- fmt.Errorf("call %d/%d: response %.20q... is not the request %.20q...", g, i, got, want)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestConcurrentCallsWithCancellation mixes calls that give up (tiny
// deadlines, cancelled contexts) with calls that complete on the same
// connection: a call that completes must get its own response, never one
// meant for a call that gave up, and a call that gives up must say why.
func TestConcurrentCallsWithCancellation(t *testing.T) {
	srv := startServer(t, srvConf{})
	c := newClient(t, srv.addr(), 1)
	const goroutines, calls = 64, 60
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range calls {
				want := fmt.Sprintf("g%d-c%d-%s", g, i, strings.Repeat("y", r.IntN(2000)))
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				switch i % 3 {
				case 1:
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(r.IntN(300))*time.Microsecond)
				case 2:
					time.AfterFunc(time.Duration(r.IntN(300))*time.Microsecond, cancel)
				}
				got, err := say(ctx, c, mEcho, want)
				cancel()
				switch {
				case err == nil && got != want:
					errs <- fmt.Errorf("call %d/%d: response %.24q is not the request %.24q", g, i, got, want)
					return
				case err != nil && i%3 == 0:
					errs <- fmt.Errorf("call %d/%d without a short deadline failed: %w", g, i, err)
					return
				case err != nil && codeOf(err) != status.DeadlineExceeded && codeOf(err) != status.Canceled:
					errs <- fmt.Errorf("call %d/%d gave up with %v, want DEADLINE_EXCEEDED or CANCELLED", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The connection is still healthy.
	mustSay(t, c, mEcho, "after")
}

// TestMetadata: request metadata reaches the handler; header and trailer
// metadata the handler sets come back, with the kernel client and with a
// client built from config.
func TestMetadata(t *testing.T) {
	srv := startServer(t, srvConf{})
	cfg := parseConfig(t, srvConf{}.yaml())
	built, err := kernel.BuildClient(srv.cat, cfg, srv.addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer built.Close()
	clients := []struct {
		name string
		c    invoker
	}{
		{"NewClient", newClient(t, srv.addr(), 1)},
		{"BuildClient", built},
	}
	for _, tc := range clients {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			ctx = metadata.NewOutgoingContext(ctx, metadata.New("x-user", "ada", "x-multi", "1", "x-multi", "2"))
			ctx = metadata.AppendToOutgoingContext(ctx, "X-Upper", "v")
			var header, trailer metadata.MD
			keys, err := say(ctx, tc.c, mMeta, "", kernel.Header(&header), kernel.Trailer(&trailer))
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Split(keys, ",")
			sort.Strings(got)
			if want := "x-multi,x-upper,x-user"; strings.Join(got, ",") != want {
				t.Errorf("handler saw keys %q, want %q", got, want)
			}
			for _, p := range []string{"h-", "t-"} {
				md := header
				if p == "t-" {
					md = trailer
				}
				if v := md.Get(p + "x-user"); v != "ada" {
					t.Errorf("%sx-user = %q, want ada (md %v)", p, v, md)
				}
				if v := md[p+"x-multi"]; strings.Join(v, ",") != "1,2" {
					t.Errorf("%sx-multi = %q, want [1 2]", p, v)
				}
				if v := md.Get(p + "x-upper"); v != "v" {
					t.Errorf("%sx-upper = %q, want v", p, v)
				}
			}
			// Without metadata the handler sees none and nothing comes back.
			header, trailer = nil, nil
			if keys := mustSay(t, tc.c, mMeta, "", kernel.Header(&header), kernel.Trailer(&trailer)); keys != "" {
				t.Errorf("handler saw keys %q without metadata", keys)
			}
			if len(header) != 0 || len(trailer) != 0 {
				t.Errorf("got header %v trailer %v without metadata", header, trailer)
			}
		})
	}
}

// TestDeadlineExceeded: the caller gets DEADLINE_EXCEEDED at its deadline,
// not when the handler ends, and the handler ran under the deadline that
// travelled on the wire.
func TestDeadlineExceeded(t *testing.T) {
	srv := startServer(t, srvConf{})
	c := newClient(t, srv.addr(), 1)

	t.Run("sleeping handler", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := say(ctx, c, mSleep, "5s")
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("call returned after %v; the handler sleeps 5s and the deadline is 100ms", took)
		}
		if codeOf(err) != status.DeadlineExceeded {
			t.Fatalf("err = %v, want DEADLINE_EXCEEDED", err)
		}
	})

	t.Run("handler sees the deadline", func(t *testing.T) {
		started, result := srv.svc.watch("dl")
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := say(ctx, c, mWatch, "dl")
		if codeOf(err) != status.DeadlineExceeded {
			t.Fatalf("err = %v, want DEADLINE_EXCEEDED", err)
		}
		recv(t, started, "handler start")
		res := recv(t, result, "handler result")
		if !res.hasDeadline {
			t.Fatal("handler context has no deadline")
		}
		if res.left > 300*time.Millisecond {
			t.Errorf("handler deadline is %v away, more than the caller's 300ms", res.left)
		}
		// The caller's CANCEL may reach the server before the server's own
		// timer fires; either way the handler's context ended.
		if !errors.Is(res.err, context.DeadlineExceeded) && !errors.Is(res.err, context.Canceled) {
			t.Errorf("handler context ended with %v", res.err)
		}
	})

	// A raw peer sends a timeout and never cancels: only the server's own
	// enforcement of the wire deadline can end the handler.
	t.Run("server enforces the wire timeout", func(t *testing.T) {
		started, result := srv.svc.watch("raw-dl")
		r := dialRaw(t, srv.addr())
		r.handshake()
		r.write(callFrames(1, 150*time.Millisecond, mWatch, "proto", "raw-dl"))
		res := r.readResults(1)[1]
		if res.code != status.DeadlineExceeded {
			t.Errorf("trailers: %v %q, want DEADLINE_EXCEEDED", res.code, res.msg)
		}
		recv(t, started, "handler start")
		h := recv(t, result, "handler result")
		if !h.hasDeadline || !errors.Is(h.err, context.DeadlineExceeded) {
			t.Errorf("handler: deadline %v (set %v), ctx err %v; want DeadlineExceeded", h.left, h.hasDeadline, h.err)
		}
	})

	t.Run("deadline already passed", func(t *testing.T) {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		if _, err := say(ctx, c, mEcho, "late"); codeOf(err) != status.DeadlineExceeded {
			t.Fatalf("err = %v, want DEADLINE_EXCEEDED", err)
		}
	})
	mustSay(t, c, mEcho, "still serving")
}

// TestCancellation: a caller that cancels gets CANCELLED at once and the
// handler's context is cancelled by the CANCEL frame (the connection stays
// open, so nothing else could have cancelled it).
func TestCancellation(t *testing.T) {
	srv := startServer(t, srvConf{})
	c := newClient(t, srv.addr(), 1)
	mustSay(t, c, mEcho, "warm up") // the connection exists before the call

	started, result := srv.svc.watch("cancel-me")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := say(ctx, c, mWatch, "cancel-me")
		errc <- err
	}()
	recv(t, started, "handler start")
	cancel()
	if err := recv(t, errc, "caller"); codeOf(err) != status.Canceled {
		t.Fatalf("err = %v, want CANCELLED", err)
	}
	res := recv(t, result, "handler context cancelled")
	if !errors.Is(res.err, context.Canceled) {
		t.Errorf("handler context ended with %v, want context.Canceled", res.err)
	}
	if res.hasDeadline {
		t.Errorf("handler had a deadline although the caller set none")
	}
	// The same connection keeps serving.
	mustSay(t, c, mEcho, "after cancel")
}

// TestStatuses: handler results map to status codes, and failures of one call
// leave the server serving.
func TestStatuses(t *testing.T) {
	srv := startServer(t, srvConf{})
	c := newClient(t, srv.addr(), 1)
	cases := []struct {
		name, method, text string
		want               status.Code
		msgHas             string
	}{
		{"ok", mEcho, "hello", status.OK, ""},
		{"not found", mFail, "5 no such thing", status.NotFound, "no such thing"},
		{"permission denied", mFail, "7 go away", status.PermissionDenied, "go away"},
		{"panic", mPanic, "", status.Internal, "panic"},
		{"unknown method", "/" + svcName + "/Nope", "", status.Unimplemented, "Nope"},
		{"unknown service", "/no.Such/Method", "", status.Unimplemented, "no.Such"},
		{"bad argument", mSleep, "banana", status.InvalidArgument, "banana"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			_, err := say(ctx, c, tc.method, tc.text)
			if codeOf(err) != tc.want {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(status.FromError(err).Message(), tc.msgHas) {
				t.Errorf("message %q does not mention %q", status.FromError(err).Message(), tc.msgHas)
			}
			if status.IsRefused(err) {
				t.Errorf("%v is marked refused", err)
			}
			mustSay(t, c, mEcho, "still serving after "+tc.name)
		})
	}
}
