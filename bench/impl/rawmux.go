package impl

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// RawMux is raw TCP over ONE connection with many calls in flight,
// multiplexed by call id. The server reads frames in one goroutine per
// connection and runs a goroutine per request; the client has one reader
// goroutine that hands each response to its waiting caller through a
// per-call channel.
//
// Both sides serialise writes with a mutex around a bufio.Writer and flush
// when no other writer is queued for the mutex: a lone call is flushed at
// once, while under concurrency the last writer in a burst flushes for all of
// them (writes coalesced across calls, the raw-mux ceiling of bench/README.md).
// Flushing after every frame instead costs about a third of the QPS at 100
// callers on the 2-core machines.
type RawMux struct{}

func (RawMux) Name() string { return "raw-mux" }

func (RawMux) Serve(addr string) (Server, error) {
	return listenTCP(addr, serveMuxConn)
}

func serveMuxConn(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 64<<10)
	var wmu sync.Mutex
	var queued atomic.Int32
	var hdr [frameHeader]byte
	for {
		id, n, err := readHeader(r, hdr[:])
		if err != nil {
			return
		}
		buf := make([]byte, frameHeader+n)
		if _, err := io.ReadFull(r, buf[frameHeader:]); err != nil {
			return
		}
		go func() {
			putHeader(buf, id, n)
			queued.Add(1)
			wmu.Lock()
			_, err := w.Write(buf)
			if queued.Add(-1) == 0 && err == nil {
				err = w.Flush()
			}
			wmu.Unlock()
			if err != nil {
				c.Close()
			}
		}()
	}
}

type muxResult struct {
	data []byte
	err  error
}

type muxClient struct {
	conn net.Conn

	wmu    sync.Mutex
	queued atomic.Int32
	w      *bufio.Writer
	hdr    [frameHeader]byte

	mu      sync.Mutex
	pending map[uint32]chan muxResult
	nextID  uint32
	err     error // set once the connection is broken
}

var errClientClosed = errors.New("client closed")

func (RawMux) Dial(addr string, callers int) (Client, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &muxClient{
		conn:    conn,
		w:       bufio.NewWriterSize(conn, 64<<10),
		pending: make(map[uint32]chan muxResult, callers),
	}
	go c.readLoop()
	return c, nil
}

func (c *muxClient) readLoop() {
	r := bufio.NewReaderSize(c.conn, 64<<10)
	var hdr [frameHeader]byte
	var err error
	for {
		var id uint32
		var n int
		id, n, err = readHeader(r, hdr[:])
		if err != nil {
			break
		}
		data := make([]byte, n)
		if _, err = io.ReadFull(r, data); err != nil {
			break
		}
		c.mu.Lock()
		ch, ok := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ok {
			ch <- muxResult{data: data} // buffered: never blocks
		}
	}
	c.fail(err)
}

// fail breaks the client: pending and future calls get err.
func (c *muxClient) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	for id, ch := range c.pending {
		ch <- muxResult{err: c.err}
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

func (c *muxClient) forget(id uint32) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

func (c *muxClient) Call(ctx context.Context, payload []byte) error {
	ch := make(chan muxResult, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	id := c.nextID
	c.nextID++
	c.pending[id] = ch
	c.mu.Unlock()

	c.queued.Add(1)
	c.wmu.Lock()
	putHeader(c.hdr[:], id, len(payload))
	_, err := c.w.Write(c.hdr[:])
	if err == nil {
		_, err = c.w.Write(payload)
	}
	if c.queued.Add(-1) == 0 && err == nil {
		err = c.w.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		c.forget(id)
		c.conn.Close()
		return err
	}

	select {
	case res := <-ch:
		if res.err != nil {
			return res.err
		}
		return verify(res.data, payload)
	case <-ctx.Done():
		c.forget(id)
		return ctx.Err()
	}
}

func (c *muxClient) Close() error {
	c.fail(errClientClosed)
	return c.conn.Close()
}
