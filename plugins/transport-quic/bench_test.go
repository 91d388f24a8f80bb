package quic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
	uds "github.com/axonrpc/axon/plugins/transport-uds"
)

// The benchmarks behind the stream-mapping decision in README.md. Run:
//
//	go test ./plugins/transport-quic -run '^$' -bench . -benchtime 2s -count 3
//
// BenchmarkUnary: a 1 KiB unary echo through kernel.Client and the native
// protocol, over QUIC (one stream per connection, the protocol's framing
// and multiplexing on it), TCP and UDS, in one process. BenchmarkRawStreams:
// the same echo with a new QUIC stream per call and no framework at all,
// the cheapest a stream-per-call mapping could be. Both report calls/s.

const benchPayload = 1 << 10

var benchService = kernel.NewService("axon.bench.v1.Echo",
	kernel.Unary("Echo", func(_ context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) { return r, nil }))

func benchTransports(b *testing.B) map[string]func() (kernel.Transport, string) {
	state := b.TempDir()
	sock, err := os.MkdirTemp("", "axon-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(sock) })
	return map[string]func() (kernel.Transport, string){
		"tcp": func() (kernel.Transport, string) { return tcp.New(tcp.DefaultConfig()), "127.0.0.1:0" },
		"uds": func() (kernel.Transport, string) {
			return uds.New(uds.DefaultConfig()), filepath.Join(sock, "b.sock")
		},
		"quic": func() (kernel.Transport, string) {
			cfg := DefaultConfig()
			cfg.StateDir = state
			return New(cfg), "127.0.0.1:0"
		},
	}
}

// serveEcho serves benchService on tr at addr and returns the listener's
// address.
func serveEcho(b *testing.B, tr kernel.Transport, addr string) string {
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{benchService})
	if err != nil {
		b.Fatal(err)
	}
	d := kernel.NewDispatcher(table, nil, []kernel.Codec{protocodec.Codec{}}, kernel.Limits{}, slog.New(slog.DiscardHandler))
	srv := native.New(native.DefaultConfig()).NewServer(d)
	ln, err := tr.Listen(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go srv.ServeConn(c)
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// run spreads b.N calls over callers goroutines and reports calls/s.
func run(b *testing.B, callers int, call func() error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	b.ResetTimer()
	start := time.Now()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := call(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
}

func BenchmarkUnary(b *testing.B) {
	payload := wrapperspb.Bytes(bytes.Repeat([]byte{'x'}, benchPayload))
	for _, name := range []string{"tcp", "uds", "quic"} {
		for _, callers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/callers=%d", name, callers), func(b *testing.B) {
				tr, addr := benchTransports(b)[name]()
				addr = serveEcho(b, tr, addr)
				scheme := name
				if name == "uds" {
					scheme = "unix"
				}
				c, err := kernel.NewClient(kernel.ClientOptions{
					Target:     scheme + "://" + addr,
					Transports: map[string]kernel.Transport{scheme: tr},
					Protocol:   native.New(native.DefaultConfig()),
					Codec:      protocodec.Codec{},
				})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				ctx := context.Background()
				run(b, callers, func() error {
					var resp wrapperspb.BytesValue
					if err := c.Invoke(ctx, "/axon.bench.v1.Echo/Echo", payload, &resp); err != nil {
						return err
					}
					if len(resp.Value) != benchPayload {
						return fmt.Errorf("echo of %d bytes", len(resp.Value))
					}
					return nil
				})
			})
		}
	}
}

// BenchmarkRawStreams is a 1 KiB echo on a new QUIC stream per call over
// one connection, without any framework: write, FIN, read to the peer's
// FIN.
func BenchmarkRawStreams(b *testing.B) {
	for _, callers := range []int{1, 16} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.StateDir = b.TempDir()
			cfg.MaxIncomingStreams = 1000
			t := New(cfg)
			stls, err := t.serverTLS("127.0.0.1")
			if err != nil {
				b.Fatal(err)
			}
			ln, err := quicgo.ListenAddr("127.0.0.1:0", stls, t.quicConfig())
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					qc, err := ln.Accept(context.Background())
					if err != nil {
						return
					}
					go func() {
						for {
							st, err := qc.AcceptStream(context.Background())
							if err != nil {
								return
							}
							go func() {
								msg, err := io.ReadAll(st)
								if err == nil {
									st.Write(msg)
								}
								st.Close()
							}()
						}
					}()
				}
			}()
			addr := ln.Addr().String()
			ctls, err := t.clientTLS("127.0.0.1", addr)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			qc, err := quicgo.DialAddr(ctx, addr, ctls, t.quicConfig())
			if err != nil {
				b.Fatal(err)
			}
			defer qc.CloseWithError(0, "")
			payload := bytes.Repeat([]byte{'x'}, benchPayload)
			run(b, callers, func() error {
				st, err := qc.OpenStreamSync(ctx)
				if err != nil {
					return err
				}
				if _, err := st.Write(payload); err != nil {
					return err
				}
				st.Close()
				got, err := io.ReadAll(st)
				if err != nil {
					return err
				}
				if len(got) != benchPayload {
					return fmt.Errorf("echo of %d bytes", len(got))
				}
				return nil
			})
		})
	}
}
