package impl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// The raw TCP impls share one frame format:
//
//	[4-byte call id, big endian][4-byte payload length, big endian][payload]
//
// raw-pingpong ignores the id.
const (
	frameHeader = 8
	maxFrame    = 64 << 20
)

func putHeader(b []byte, id uint32, n int) {
	binary.BigEndian.PutUint32(b[0:4], id)
	binary.BigEndian.PutUint32(b[4:8], uint32(n))
}

// readHeader reads one frame header into hdr and returns id and length.
func readHeader(r io.Reader, hdr []byte) (id uint32, n int, err error) {
	if _, err := io.ReadFull(r, hdr[:frameHeader]); err != nil {
		return 0, 0, err
	}
	id = binary.BigEndian.Uint32(hdr[0:4])
	size := binary.BigEndian.Uint32(hdr[4:8])
	if size > maxFrame {
		return 0, 0, fmt.Errorf("frame of %d bytes exceeds limit", size)
	}
	return id, int(size), nil
}

// tcpServer is the accept loop and connection tracking shared by the raw
// and net/rpc servers.
type tcpServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

// listenTCP listens on addr and runs handle in a new goroutine per accepted
// connection; handle need not close the connection.
func listenTCP(addr string, handle func(net.Conn)) (*tcpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &tcpServer{ln: ln, conns: make(map[net.Conn]struct{})}
	go s.accept(handle)
	return s, nil
}

func (s *tcpServer) accept(handle func(net.Conn)) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go func() {
			handle(c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

func (s *tcpServer) Addr() string { return s.ln.Addr().String() }

func (s *tcpServer) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.done = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return err
}
