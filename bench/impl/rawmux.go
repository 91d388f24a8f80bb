package impl

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

// RawMux is raw TCP over ONE connection with many calls in flight,
// multiplexed by call id. The server reads frames in one goroutine per
// connection and runs a goroutine per request, which writes its response
// under a mutex and flushes it (one write per response). The client writes
// under a mutex and has one reader goroutine that hands each response to its
// waiting caller through a per-call channel.
type RawMux struct{}

func (RawMux) Name() string { return "raw-mux" }

func (RawMux) Serve(addr string) (Server, error) {
	return listenTCP(addr, serveMuxConn)
}

func serveMuxConn(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 64<<10)
	var wmu sync.Mutex
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
			wmu.Lock()
			_, err := w.Write(buf)
			if err == nil {
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

	wmu sync.Mutex
	w   *bufio.Writer
	hdr [frameHeader]byte

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

	c.wmu.Lock()
	putHeader(c.hdr[:], id, len(payload))
	_, err := c.w.Write(c.hdr[:])
	if err == nil {
		_, err = c.w.Write(payload)
	}
	if err == nil {
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
