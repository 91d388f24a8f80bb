package impl

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
)

// RawPingPong is raw TCP with one connection per caller and one call in
// flight per connection: write a frame, read a frame. The server runs one
// goroutine per connection doing the same. The client keeps its connections
// in a pool of exactly callers entries, so a caller never waits for one.
//
// With TLS set (impl "raw-pingpong-tls"), each connection is crypto/tls
// with grpc-tls's configurations (mutual TLS 1.3, the bench TLS files): the
// floor of what TLS costs a round trip, with no framework around it.
type RawPingPong struct {
	TLS bool
}

func (p RawPingPong) Name() string {
	if p.TLS {
		return "raw-pingpong-tls"
	}
	return "raw-pingpong"
}

func (p RawPingPong) Serve(addr string) (Server, error) {
	if !p.TLS {
		return listenTCP(addr, servePingPongConn)
	}
	conf, err := serverTLS()
	if err != nil {
		return nil, err
	}
	return listenTCP(addr, func(c net.Conn) {
		tc := tls.Server(c, conf)
		servePingPongConn(tc)
		tc.Close()
	})
}

func servePingPongConn(c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	var hdr [frameHeader]byte
	var buf []byte
	for {
		id, n, err := readHeader(r, hdr[:])
		if err != nil {
			return
		}
		if cap(buf) < frameHeader+n {
			buf = make([]byte, frameHeader+n)
		}
		buf = buf[:frameHeader+n]
		if _, err := io.ReadFull(r, buf[frameHeader:]); err != nil {
			return
		}
		putHeader(buf, id, n)
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

type ppConn struct {
	c    net.Conn
	r    *bufio.Reader
	wbuf []byte
	rbuf []byte
	hdr  [frameHeader]byte
}

type ppClient struct {
	pool   chan *ppConn
	conns  []*ppConn
	once   sync.Once
	closed chan struct{}
}

func (p RawPingPong) Dial(addr string, callers int) (Client, error) {
	if callers < 1 {
		callers = 1
	}
	var conf *tls.Config
	if p.TLS {
		var err error
		if conf, err = clientTLS(addr); err != nil {
			return nil, err
		}
	}
	cl := &ppClient{pool: make(chan *ppConn, callers), closed: make(chan struct{})}
	for range callers {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			cl.Close()
			return nil, err
		}
		if conf != nil {
			c = tls.Client(c, conf)
		}
		pc := &ppConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
		cl.conns = append(cl.conns, pc)
		cl.pool <- pc
	}
	return cl, nil
}

func (cl *ppClient) Call(ctx context.Context, payload []byte) error {
	var pc *ppConn
	select {
	case pc = <-cl.pool:
	case <-ctx.Done():
		return ctx.Err()
	case <-cl.closed:
		return errClientClosed
	}
	if err := pc.roundTrip(payload); err != nil {
		pc.c.Close() // broken; not returned to the pool
		return err
	}
	cl.pool <- pc
	return nil
}

func (pc *ppConn) roundTrip(payload []byte) error {
	n := frameHeader + len(payload)
	if cap(pc.wbuf) < n {
		pc.wbuf = make([]byte, n)
	}
	pc.wbuf = pc.wbuf[:n]
	putHeader(pc.wbuf, 0, len(payload))
	copy(pc.wbuf[frameHeader:], payload)
	if _, err := pc.c.Write(pc.wbuf); err != nil {
		return err
	}
	_, size, err := readHeader(pc.r, pc.hdr[:])
	if err != nil {
		return err
	}
	if cap(pc.rbuf) < size {
		pc.rbuf = make([]byte, size)
	}
	pc.rbuf = pc.rbuf[:size]
	if _, err := io.ReadFull(pc.r, pc.rbuf); err != nil {
		return err
	}
	return verify(pc.rbuf, payload)
}

func (cl *ppClient) Close() error {
	var err error
	cl.once.Do(func() {
		close(cl.closed)
		for _, pc := range cl.conns {
			if e := pc.c.Close(); e != nil && !errors.Is(e, net.ErrClosed) && err == nil {
				err = e
			}
		}
	})
	return err
}
