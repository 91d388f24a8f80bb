package quic

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	quicgo "github.com/quic-go/quic-go"
)

// echoServer listens on addr and echoes every connection until it closes.
// Listen is retried while the address is still held by a server that is
// closing.
func echoServer(t *testing.T, tr *Transport, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = tr.Listen(context.Background(), addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln
}

// ping dials addr, checks an echo, closes, and returns the connection.
func ping(t *testing.T, tr *Transport, addr string) *conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := tr.Dial(ctx, addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := nc.Write([]byte("hello")); err != nil {
		t.Fatalf("write: %v", err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(nc, b); err != nil || string(b) != "hello" {
		t.Fatalf("echo: %q, %v", b, err)
	}
	return nc.(*conn)
}

// resumed dials until a connection resumes a session with 0-RTT (the first
// connection's session ticket arrives after its handshake), or fails.
func resumed(t *testing.T, tr *Transport, addr string) {
	t.Helper()
	for range 20 {
		if c := ping(t, tr, addr); c.qc.ConnectionState().Used0RTT {
			return
		}
	}
	t.Fatal("no connection used 0-RTT")
}

// TestZeroRTT: with allow_0rtt, a client resumes with 0-RTT; when a
// restarted server rejects the early data, the connection recovers by
// sending it again, invisibly to its user.
func TestZeroRTT(t *testing.T) {
	if RaceEnabled {
		t.Skip("quic-go/quic-go#4303: quic-go's 0-RTT client path has a known data race; run without -race")
	}
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	cfg.Allow0RTT = true
	cfg.HandshakeTimeout = 5 * time.Second
	client := New(cfg)

	first := echoServer(t, New(cfg), "127.0.0.1:0")
	addr := first.Addr().String()
	ping(t, client, addr)
	resumed(t, client, addr)

	// A new server on the same address has other session ticket keys.
	first.Close()
	second := echoServer(t, New(cfg), addr)
	defer second.Close()
	c := ping(t, client, addr)
	c.emu.Lock()
	redone, err := c.redone, c.redoErr
	c.emu.Unlock()
	if !redone || err != nil {
		t.Errorf("0-RTT rejection: recovered %v (%v); want a recovery that succeeded", redone, err)
	}
	resumed(t, client, addr)
}

// TestExtraStreamsRefused: streams beyond a connection's first are reset,
// so a client cannot park data in them; the first stream goes on.
func TestExtraStreamsRefused(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StateDir = t.TempDir()
	tr := New(cfg)
	ln := echoServer(t, tr, "127.0.0.1:0")
	defer ln.Close()
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := tr.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := nc.(*conn)
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	extra, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	extra.SetDeadline(time.Now().Add(20 * time.Second))
	extra.Write([]byte("parked"))
	_, err = extra.Read(b)
	var se *quicgo.StreamError
	if !errors.As(err, &se) || se.ErrorCode != codeExtraStream || !se.Remote {
		t.Fatalf("read on a second stream: %v, want a reset with code %#x", err, codeExtraStream)
	}
	if _, err := c.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "again" {
		t.Fatalf("first stream after the second was refused: %q %v", b, err)
	}
}
