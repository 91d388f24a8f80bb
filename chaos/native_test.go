package chaos

// Attackers that speak the native Axon protocol with raw bytes (the wire
// format of plugins/protocol-axon/README.md, numbers from kernel/axonwire).

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel/axonwire"
	"github.com/axonrpc/axon/kernel/transporttest"
)

var (
	appendFrame = transporttest.AppendFrame
	headers     = transporttest.Headers // timeout, method, codec, metadata pairs
)

// nativeHello is a client's preface and an empty SETTINGS frame.
func nativeHello() []byte {
	return appendFrame([]byte(axonwire.Preface), axonwire.FrameSettings, 0, 0, nil)
}

// pad is 8 KB of metadata: one key whose value, with the encoding, stays
// under the default max_metadata of 8 KiB.
var pad = strings.Repeat("p", 8000)

// watchState polls the kernel's TCP state of c, for attackers that never
// read (so cannot see EOF): anything but ESTABLISHED means the server
// closed or reset the connection. The returned channel is closed then, or
// when ctx is done.
func watchState(ctx context.Context, c net.Conn, r *connRec) <-chan struct{} {
	gone := make(chan struct{})
	rc, err := c.(*net.TCPConn).SyscallConn()
	go func() {
		defer close(gone)
		if err != nil {
			return
		}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			state := -1
			if cerr := rc.Control(func(fd uintptr) {
				if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
					state = int(info.State)
				}
			}); cerr != nil {
				return // closed by us
			}
			if state != -1 && state != unix.BPF_TCP_ESTABLISHED {
				r.serverClosed()
				return
			}
		}
	}()
	return gone
}

// nativeSlowReader sends unary calls with 64 KiB requests as fast as the
// server takes them and never reads a byte (a small receive buffer makes
// the server's writes stall sooner).
func nativeSlowReader(ctx context.Context, c net.Conn, r *connRec) {
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	gone := watchState(ctx, c, r)
	go func() {
		<-gone
		c.Close() // unblocks a Write stuck on a server that stopped reading
	}()
	msg, _ := proto.Marshal(&echopb.SayRequest{Text: strings.Repeat("x", 64<<10)})
	h := headers(0, echoSay, "proto")
	if _, err := c.Write(nativeHello()); err != nil {
		writeFailed(ctx, r)
		return
	}
	var buf []byte
	for id := uint32(1); ctx.Err() == nil; id += 2 {
		buf = appendFrame(buf[:0], axonwire.FrameHeaders, 0, id, h)
		buf = appendFrame(buf, axonwire.FrameData, axonwire.FlagEndStream, id, msg)
		if _, err := c.Write(buf); err != nil {
			writeFailed(ctx, r)
			return
		}
	}
}

// writeFailed records a write error as the server closing the connection,
// unless the attack is over (then it was us).
func writeFailed(ctx context.Context, r *connRec) {
	if ctx.Err() == nil {
		r.serverClosed()
	}
}

// nativeHalfOpen opens calls with HEADERS (8 KB of metadata each) and
// never sends their messages.
func nativeHalfOpen(calls int) func(context.Context, net.Conn, *connRec) {
	return func(ctx context.Context, c net.Conn, r *connRec) {
		gone := watchRead(ctx, c, r)
		h := headers(0, echoSay, "proto", "x-pad", pad)
		buf := nativeHello()
		for i := range calls {
			buf = appendFrame(buf, axonwire.FrameHeaders, 0, uint32(2*i+1), h)
		}
		if _, err := c.Write(buf); err != nil {
			writeFailed(ctx, r)
		}
		<-gone
	}
}

// nativeIdle sends the preface and SETTINGS, then nothing.
func nativeIdle(ctx context.Context, c net.Conn, r *connRec) {
	gone := watchRead(ctx, c, r)
	if _, err := c.Write(nativeHello()); err != nil {
		writeFailed(ctx, r)
	}
	<-gone
}

// nativeSlowPreface sends the 8-byte preface one byte per second, then
// nothing.
func nativeSlowPreface(ctx context.Context, c net.Conn, r *connRec) {
	gone := watchRead(ctx, c, r)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 0; i < axonwire.PrefaceLen; i++ {
		if _, err := c.Write([]byte{axonwire.Preface[i]}); err != nil {
			writeFailed(ctx, r)
			break
		}
		select {
		case <-gone:
			return
		case <-tick.C:
		}
	}
	<-gone
}

// floodLoop writes batch() in a tight loop until a write fails or the
// server closes the connection; it starts with the native hello.
func floodLoop(ctx context.Context, c net.Conn, r *connRec, hello []byte, batch func([]byte) []byte) {
	gone := watchRead(ctx, c, r)
	if _, err := c.Write(hello); err != nil {
		writeFailed(ctx, r)
		<-gone
		return
	}
	var buf []byte
	for ctx.Err() == nil {
		buf = batch(buf[:0])
		if _, err := c.Write(buf); err != nil {
			writeFailed(ctx, r)
			break
		}
	}
	<-gone
}

// nativeUseless floods frames that do no work: 1-byte frames of an
// unknown type, WINDOW_UPDATE on stream 0, CANCEL of streams never opened.
func nativeUseless(ctx context.Context, c net.Conn, r *connRec) {
	id := uint32(1)
	win := binary.AppendUvarint(nil, 1<<16)
	code := binary.AppendUvarint(nil, 1) // CANCELLED
	floodLoop(ctx, c, r, nativeHello(), func(b []byte) []byte {
		for range 256 {
			b = appendFrame(b, 0x7f, 0, 0, []byte{0})
			b = appendFrame(b, axonwire.FrameWindow, 0, 0, win)
			b = appendFrame(b, axonwire.FrameCancel, 0, id, code)
			id += 2
		}
		return b
	})
}

// nativeOpenCancel opens calls and cancels them at once: HEADERS then
// CANCEL, as fast as the connection takes them.
func nativeOpenCancel(ctx context.Context, c net.Conn, r *connRec) {
	id := uint32(1)
	h := headers(0, echoSay, "proto")
	code := binary.AppendUvarint(nil, 1) // CANCELLED
	floodLoop(ctx, c, r, nativeHello(), func(b []byte) []byte {
		for range 64 {
			b = appendFrame(b, axonwire.FrameHeaders, 0, id, h)
			b = appendFrame(b, axonwire.FrameCancel, 0, id, code)
			id += 2
		}
		return b
	})
}
