package native

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// heldConn is a net.Conn whose Write records each call's bytes and, while
// hold is set, blocks until release is closed.
type heldConn struct {
	net.Conn
	mu      sync.Mutex
	writes  [][]byte
	entered chan struct{} // receives when a Write begins
	release chan struct{}
}

func newHeldConn() *heldConn {
	return &heldConn{entered: make(chan struct{}, 100), release: make(chan struct{})}
}

func (c *heldConn) Write(b []byte) (int, error) {
	c.entered <- struct{}{}
	<-c.release
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), b...))
	c.mu.Unlock()
	return len(b), nil
}

func (c *heldConn) Close() error { return nil }

func (c *heldConn) written() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.writes...)
}

func appendText(s string) func([]byte) []byte {
	return func(b []byte) []byte { return append(b, s...) }
}

// writerLoops counts the stream writer goroutines running in the process.
func writerLoops() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), ".(*writer).loop(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// waitFor polls cond until it holds, failing the test after a generous
// bound (a hang, not a measure of speed).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *writer) loopRunning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.looping
}

// TestWriteLaterBatches: stream frames handed to the writer goroutine while
// it is writing do not wait for that write, and all go in its next write,
// in order, behind frames appended inline meanwhile.
func TestWriteLaterBatches(t *testing.T) {
	c := newHeldConn()
	w := newWriter(c)
	defer w.fail(errConnClosed)
	if err := w.writeLater(appendText("a")); err != nil {
		t.Fatal(err)
	}
	<-c.entered // the goroutine is writing "a", held
	for _, s := range []string{"b", "c", "d"} {
		if err := w.writeLater(appendText(s)); err != nil { // must not block
			t.Fatal(err)
		}
	}
	if err := w.write(appendText("E")); err != nil { // inline: another flush is running
		t.Fatal(err)
	}
	if err := w.writeLater(appendText("f")); err != nil {
		t.Fatal(err)
	}
	close(c.release)
	w.waitIdle()
	var got []string
	for _, b := range c.written() {
		got = append(got, string(b))
	}
	if strings.Join(got, "|") != "a|bcdEf" {
		t.Fatalf("writes %q, want [a bcdEf]", got)
	}
}

// TestWriteStaysInline: a unary call's write flushes on the caller's
// goroutine and starts no writer goroutine.
func TestWriteStaysInline(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go io.Copy(io.Discard, server)
	w := newWriter(client)
	if err := w.write(appendText("unary")); err != nil {
		t.Fatal(err)
	}
	if w.loopRunning() {
		t.Fatal("write started the stream writer goroutine")
	}
	w.fail(errConnClosed)
}

// TestWriterLoopIdlesAndRestarts: the stream writer goroutine exits after
// idling on a live connection, the next stream frame starts it again, and
// nothing is lost or reordered across the restart.
func TestWriterLoopIdlesAndRestarts(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	var got bytes.Buffer
	read := make(chan struct{})
	go func() { got.ReadFrom(server); close(read) }()
	w := newWriter(client)
	w.idle = time.Millisecond
	for round, s := range []string{"one,", "two,", "three,"} {
		if err := w.writeLater(appendText(s)); err != nil {
			t.Fatal(err)
		}
		w.waitIdle()
		waitFor(t, "the writer goroutine to exit after idling", func() bool { return !w.loopRunning() })
		if round == 1 {
			w.write(appendText("inline,"))
		}
	}
	client.Close()
	<-read
	if got.String() != "one,two,inline,three," {
		t.Fatalf("read %q", got.String())
	}
}

// TestWriterLoopEndsWithConnection: the stream writer goroutine exits when
// the connection fails, even with a write pending and no idle timeout near;
// later writes return the error.
func TestWriterLoopEndsWithConnection(t *testing.T) {
	defer func(d time.Duration) { writerIdle = d }(writerIdle)
	writerIdle = time.Hour
	base := writerLoops()
	c := newHeldConn()
	w := newWriter(c)
	if err := w.writeLater(appendText("held")); err != nil {
		t.Fatal(err)
	}
	<-c.entered
	w.writeLater(appendText("pending")) // handed over behind the held write
	w.fail(errConnClosed)
	close(c.release)
	waitFor(t, "the writer goroutine to exit", func() bool { return writerLoops() == base })
	if err := w.writeLater(appendText("late")); !errors.Is(err, errConnClosed) {
		t.Fatalf("writeLater after fail: %v", err)
	}
	w.waitIdle() // returns: the connection failed
	if writerLoops() != base {
		t.Fatal("writeLater after fail started a goroutine")
	}

	// A goroutine waiting for work exits too.
	client, server := net.Pipe()
	defer client.Close()
	go io.Copy(io.Discard, server)
	w = newWriter(client)
	if err := w.writeLater(appendText("idle next")); err != nil {
		t.Fatal(err)
	}
	w.waitIdle()
	if !w.loopRunning() {
		t.Fatal("the writer goroutine is not running")
	}
	w.fail(errConnClosed)
	waitFor(t, "the idle writer goroutine to exit", func() bool { return writerLoops() == base })
}

// TestRecvBufClasses: a received message's buffer is less than twice its
// length (at least 16 bytes), so a stream's queue holds less than twice
// its window; buffers go back to their class.
func TestRecvBufClasses(t *testing.T) {
	for _, n := range []int{0, 1, 16, 17, 1000, 1024, 1025, 4096, maxRecvClass - 1, maxRecvClass, maxRecvClass + 1, 1 << 20} {
		bp := getRecvBuf(n)
		if len(*bp) != n {
			t.Fatalf("getRecvBuf(%d): length %d", n, len(*bp))
		}
		if c := cap(*bp); c < n || (c >= 2*n && c > 1<<minRecvShift) {
			t.Fatalf("getRecvBuf(%d): capacity %d", n, c)
		}
		putRecvBuf(bp)
	}
	odd := make([]byte, 100)
	putRecvBuf(&odd) // not a class size: dropped, not pooled
	for range 100 {
		if bp := getRecvBuf(100); cap(*bp) != 128 {
			t.Fatalf("getRecvBuf(100): capacity %d, want 128", cap(*bp))
		}
	}
}
