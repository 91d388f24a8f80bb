package impl

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func testPayload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + 1)
	}
	return p
}

// serveStream starts im's server in-process and dials a stream client.
func serveStream(tb testing.TB, im Streamer) StreamClient {
	tb.Helper()
	srv, err := im.Serve("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	cl, err := im.DialStream(srv.Addr())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cl.Close() })
	return cl
}

// TestStreams runs every Streamer in-process: a bidirectional echo of many
// messages (more than any flow-control window) sent while they are read,
// a bounded download, and an unbounded download ended by cancelling.
func TestStreams(t *testing.T) {
	for _, im := range Streamers() {
		t.Run(im.Name(), func(t *testing.T) {
			cl := serveStream(t, im)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			t.Run("bidi", func(t *testing.T) {
				s, err := cl.Bidi(ctx)
				if err != nil {
					t.Fatal(err)
				}
				const n = 2000
				sent := make(chan error, 1)
				go func() {
					for i := range n {
						if err := s.Send(testPayload(i % 3000)); err != nil {
							sent <- err
							return
						}
					}
					sent <- s.CloseSend()
				}()
				for i := range n {
					got, err := s.Recv()
					if err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
					if err := verify(got, testPayload(i%3000)); err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
				}
				if _, err := s.Recv(); err != io.EOF {
					t.Fatalf("after the last message: %v, want io.EOF", err)
				}
				if err := <-sent; err != nil {
					t.Fatal(err)
				}
			})

			t.Run("download", func(t *testing.T) {
				p := testPayload(1024)
				s, err := cl.Download(ctx, p, 500)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 500 {
					got, err := s.Recv()
					if err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
					if err := verify(got, p); err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
				}
				if _, err := s.Recv(); err != io.EOF {
					t.Fatalf("after the last message: %v, want io.EOF", err)
				}
			})

			t.Run("unbounded-download-cancelled", func(t *testing.T) {
				dctx, dcancel := context.WithCancel(ctx)
				s, err := cl.Download(dctx, testPayload(1024), 0)
				if err != nil {
					dcancel()
					t.Fatal(err)
				}
				for range 1000 {
					if _, err := s.Recv(); err != nil {
						dcancel()
						t.Fatal(err)
					}
				}
				dcancel()
				for {
					_, err := s.Recv()
					if err == nil {
						continue
					}
					if errors.Is(err, io.EOF) {
						t.Fatal("unbounded download ended with OK after cancelling")
					}
					break
				}
				// The connection still serves after the cancelled stream.
				s2, err := cl.Download(ctx, testPayload(8), 3)
				if err != nil {
					t.Fatal(err)
				}
				for range 3 {
					if _, err := s2.Recv(); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := s2.Recv(); err != io.EOF {
					t.Fatalf("after the last message: %v, want io.EOF", err)
				}
			})
		})
	}
}

// BenchmarkBidiStream measures the echo over ONE bidirectional stream per
// Streamer, server in-process: one goroutine sends b.N messages of 1 KiB as
// fast as flow control allows, the benchmark goroutine reads the b.N echoes.
// MB/s counts the payload once (one direction).
//
//	go test ./impl -run '^$' -bench BidiStream -benchtime 3s
func BenchmarkBidiStream(b *testing.B) {
	for _, im := range Streamers() {
		b.Run(im.Name(), func(b *testing.B) {
			cl := serveStream(b, im)
			p := testPayload(1024)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := cl.Bidi(ctx)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			sent := make(chan error, 1)
			go func() {
				for range b.N {
					if err := s.Send(p); err != nil {
						sent <- err
						return
					}
				}
				sent <- s.CloseSend()
			}()
			for i := range b.N {
				got, err := s.Recv()
				if err != nil {
					b.Fatalf("message %d: %v", i, err)
				}
				if len(got) != len(p) {
					b.Fatalf("message %d: %d bytes, want %d", i, len(got), len(p))
				}
			}
			if _, err := s.Recv(); err != io.EOF {
				b.Fatalf("after the last message: %v, want io.EOF", err)
			}
			b.StopTimer()
			if err := <-sent; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkDownload measures a server-streaming download of b.N messages of
// 1 KiB over one stream per Streamer, server in-process.
func BenchmarkDownload(b *testing.B) {
	for _, im := range Streamers() {
		b.Run(im.Name(), func(b *testing.B) {
			cl := serveStream(b, im)
			p := testPayload(1024)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			b.ResetTimer()
			s, err := cl.Download(context.Background(), p, uint64(b.N))
			if err != nil {
				b.Fatal(err)
			}
			for i := range b.N {
				got, err := s.Recv()
				if err != nil {
					b.Fatalf("message %d: %v", i, err)
				}
				if len(got) != len(p) {
					b.Fatalf("message %d: %d bytes, want %d", i, len(got), len(p))
				}
			}
			if _, err := s.Recv(); err != io.EOF {
				b.Fatalf("after the last message: %v, want io.EOF", err)
			}
		})
	}
}
