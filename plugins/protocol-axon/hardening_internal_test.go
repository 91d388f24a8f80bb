package native

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// TestWriterTimeoutFreesBuffers: a write the peer never takes fails after
// the writer's timeout, closes the connection and drops the pending bytes.
func TestWriterTimeoutFreesBuffers(t *testing.T) {
	srv, peer := net.Pipe() // unbuffered: nothing is taken until the peer reads
	defer peer.Close()
	w := newWriter(srv)
	w.timeout, w.closeOnErr, w.limit = 100*time.Millisecond, true, 64<<10
	big := bytes.Repeat([]byte("x"), 1<<20)
	done := make(chan error, 1)
	go func() { done <- w.write(func(b []byte) []byte { return append(b, big...) }) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a write nobody read succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the write did not time out")
	}
	if err := w.write(func(b []byte) []byte { return append(b, "more"...) }); err == nil {
		t.Fatal("a write after the timeout succeeded")
	}
	w.mu.Lock()
	buf, spare := w.buf, w.spare
	w.mu.Unlock()
	if buf != nil || spare != nil || w.backlog() != 0 {
		t.Fatalf("after the timeout: buf %d, spare %d bytes, backlog %d; want all freed", cap(buf), cap(spare), w.backlog())
	}
	if _, err := peer.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection is still open")
	}
}

// TestTryWriteBounded: the reader's own frames never wait behind a stuck
// flush, and fail once more than the bound of them is queued.
func TestTryWriteBounded(t *testing.T) {
	c := newHeldConn()
	w := newWriter(c)
	go w.write(appendText("stuck")) // holds the flush until released
	<-c.entered
	var err error
	n := 0
	for ; n < 1000 && err == nil; n++ {
		err = w.tryWrite(appendText("0123456789"), 100)
	}
	if err != errBacklog || n > 20 {
		t.Fatalf("after %d frames: %v, want errBacklog after about 10", n, err)
	}
	close(c.release)
}
