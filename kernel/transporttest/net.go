package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// netTests check the transport's listener and connections without a
// protocol: what the kernel's accept loop and the native protocol rely on.
var netTests = []subtest{
	{"echo", testNetEcho},
	{"silent client does not block accept", testNetSilentClient},
	{"close unblocks reads", testNetClose},
	{"read deadline", testNetDeadline},
	{"listener close", testNetListenerClose},
	{"dial with a done context", testNetDialDone},
}

// rawServer listens and runs handle on every accepted connection in its own
// goroutine, closing the connection when handle returns. It returns the
// listener's address; the test ends with the listener and connections
// closed and every handler returned.
func rawServer(t *testing.T, h *Harness, handle func(net.Conn)) string {
	t.Helper()
	ln := h.listen(t)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				t.Logf("accept: %v", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			c.SetDeadline(time.Now().Add(timeout))
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		recv(t, done, "the accept loop and handlers to return after Close")
	})
	return ln.Addr().String()
}

// testNetEcho: a megabyte goes through a connection and back intact, while
// both directions are busy at once; both ends have addresses.
func testNetEcho(t *testing.T, h *Harness) {
	addrs := make(chan error, 1)
	addr := rawServer(t, h, func(c net.Conn) {
		if c.LocalAddr() == nil || c.RemoteAddr() == nil {
			addrs <- fmt.Errorf("accepted connection: LocalAddr %v, RemoteAddr %v", c.LocalAddr(), c.RemoteAddr())
		} else {
			addrs <- nil
		}
		io.Copy(c, c)
	})
	c := h.dial(t, addr)
	if c.LocalAddr() == nil || c.RemoteAddr() == nil {
		t.Errorf("dialed connection: LocalAddr %v, RemoteAddr %v", c.LocalAddr(), c.RemoteAddr())
	}
	payload := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	written := make(chan error, 1)
	go func() {
		var err error
		for b := payload; len(b) > 0 && err == nil; {
			n := min(len(b), 1+rng.IntN(64<<10))
			_, err = c.Write(b[:n])
			b = b[n:]
		}
		written <- err
	}()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read the echo: %v", err)
	}
	if err := recv(t, written, "the writes"); err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, payload) {
		i := 0
		for got[i] == payload[i] {
			i++
		}
		t.Fatalf("echo differs from what was sent at byte %d of %d", i, len(payload))
	}
	if err := recv(t, addrs, "the server's connection"); err != nil {
		t.Error(err)
	}
}

// testNetSilentClient: a client that connects and sends nothing must not
// keep Accept from returning the next client's connection.
func testNetSilentClient(t *testing.T, h *Harness) {
	addr := rawServer(t, h, func(c net.Conn) {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err == nil {
			c.Write(b[:])
		}
	})
	h.dial(t, addr) // silent
	c := h.dial(t, addr)
	if _, err := c.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'b' {
		t.Fatalf("second client: read %q, %v", b[:], err)
	}
}

// testNetClose: closing a connection unblocks a Read on it, and the peer's
// Read ends too.
func testNetClose(t *testing.T, h *Harness) {
	serverRead := make(chan error, 1)
	addr := rawServer(t, h, func(c net.Conn) {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			serverRead <- fmt.Errorf("first byte: %w", err)
			return
		}
		_, err := c.Read(b[:]) // until the client closes
		if err == nil {
			err = errors.New("read returned data nobody sent")
		} else {
			err = nil
		}
		serverRead <- err
	})
	c := h.dial(t, addr)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	clientRead := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := c.Read(b[:])
		clientRead <- err
	}()
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := recv(t, clientRead, "a blocked Read to return after Close"); err == nil {
		t.Error("Read after Close returned no error")
	}
	if err := recv(t, serverRead, "the server's Read to end after the client closed"); err != nil {
		t.Error(err)
	}
}

// testNetDeadline: a read deadline, including one set while a Read is
// blocked, makes Read fail with a timeout; clearing it lets the connection
// go on.
func testNetDeadline(t *testing.T, h *Harness) {
	release := make(chan struct{})
	addr := rawServer(t, h, func(c net.Conn) {
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return
		}
		select {
		case <-release:
			c.Write([]byte("y"))
		case <-time.After(timeout):
		}
		io.Copy(io.Discard, c)
	})
	c := h.dial(t, addr)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	isTimeout := func(what string, err error) {
		t.Helper()
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: Read returned %v (%T), want a net.Error whose Timeout is true and that is os.ErrDeadlineExceeded", what, err, err)
		}
	}
	var b [1]byte
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(b[:])
	isTimeout("deadline set before Read", err)

	c.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(b[:])
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // usually lets the Read block first; either order must work
	c.SetReadDeadline(time.Now())
	isTimeout("deadline set during Read", recv(t, errc, "a blocked Read to see its deadline pass"))

	c.SetReadDeadline(time.Now().Add(timeout))
	close(release)
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'y' {
		t.Fatalf("after clearing the deadline: read %q, %v", b[:], err)
	}
}

// testNetListenerClose: Close makes a blocked Accept return an error that
// is net.ErrClosed (the kernel's accept loop stops on that and retries on
// anything else), and the address then refuses dials.
func testNetListenerClose(t *testing.T, h *Harness) {
	ln, err := h.Transport.Listen(ctx(t), h.Address(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
			err = errors.New("accepted a connection nobody dialed")
		}
		errc <- err
	}()
	if err := ln.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := recv(t, errc, "Accept to return after Close"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close returned %v; want an error that is net.ErrClosed", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener returned %v; want an error that is net.ErrClosed", err)
	}
	dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	dialed := make(chan error, 1)
	go func() {
		c, err := h.ClientTransport.Dial(dctx, addr)
		if err == nil {
			c.Close()
			err = errDialed
		}
		dialed <- err
	}()
	if err := recv(t, dialed, "a dial to a closed listener to fail"); errors.Is(err, errDialed) {
		t.Errorf("dial %s after its listener closed succeeded", addr)
	}
}

var errDialed = errors.New("dial succeeded")

// testNetDialDone: Dial with a context that is already done fails.
func testNetDialDone(t *testing.T, h *Harness) {
	addr := rawServer(t, h, func(c net.Conn) { io.Copy(io.Discard, c) })
	dctx, cancel := context.WithCancel(context.Background())
	cancel()
	dialed := make(chan error, 1)
	go func() {
		c, err := h.ClientTransport.Dial(dctx, addr)
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	if err := recv(t, dialed, "Dial with a cancelled context"); err == nil {
		t.Error("Dial with a cancelled context succeeded")
	}
}
