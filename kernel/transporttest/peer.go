package transporttest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel/axonwire"
	"github.com/axonrpc/axon/kernel/status"
)

// Peer drives a connection to a native-protocol server byte by byte, for
// tests of how a server treats what a well-behaved client would never send.
// It follows the wire format of plugins/protocol-axon/README.md (version 1),
// with the numbers of package axonwire: the preface, then frames with a
// 10-byte header (length uint32 BE, type, flags, stream id uint32 BE). A Peer is used by one goroutine; its
// methods fail the test on a write error.
type Peer struct {
	t testing.TB
	net.Conn
	br *bufio.Reader
}

// Frame is one frame as read off the wire.
type Frame struct {
	Type, Flags byte
	Stream      uint32
	Payload     []byte
}

// Result is one call's outcome as a Peer saw it.
type Result struct {
	Code    status.Code
	Msg     string
	Refused bool
	Data    []byte            // the response message, if any
	Trailer map[string]string // trailer metadata (one value per key)
}

// NewPeer wraps c, which has sent nothing yet. The caller closes c.
func NewPeer(t testing.TB, c net.Conn) *Peer {
	return &Peer{t: t, Conn: c, br: bufio.NewReader(c)}
}

// Send writes b as it is.
func (p *Peer) Send(b []byte) {
	p.t.Helper()
	if _, err := p.Write(b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// ReadFull reads exactly len(b) bytes, through the Peer's buffer.
func (p *Peer) ReadFull(b []byte) error {
	_, err := io.ReadFull(p.br, b)
	return err
}

// Handshake exchanges prefaces and SETTINGS and returns the server's
// settings as id -> value.
func (p *Peer) Handshake() map[uint64]uint64 {
	p.t.Helper()
	p.Send(AppendFrame([]byte(axonwire.Preface), axonwire.FrameSettings, 0, 0, nil))
	pre := make([]byte, axonwire.PrefaceLen)
	if _, err := io.ReadFull(p.br, pre); err != nil {
		p.t.Fatalf("read the server's preface: %v", err)
	}
	if string(pre) != axonwire.Preface {
		p.t.Fatalf("server preface %q", pre)
	}
	f, err := p.ReadFrame()
	if err != nil {
		p.t.Fatalf("read the server's settings: %v", err)
	}
	if f.Type != axonwire.FrameSettings || f.Stream != 0 {
		p.t.Fatalf("first server frame is type %d on stream %d, want SETTINGS on 0", f.Type, f.Stream)
	}
	settings := map[uint64]uint64{}
	for b := f.Payload; len(b) > 0; {
		var id, v uint64
		var err error
		if id, b, err = uvarint(b); err == nil {
			v, b, err = uvarint(b)
		}
		if err != nil {
			p.t.Fatalf("bad settings payload %x", f.Payload)
		}
		settings[id] = v
	}
	return settings
}

// FrameHeader encodes a frame header.
func FrameHeader(length uint32, typ, flags byte, stream uint32) []byte {
	var h [axonwire.HeaderLen]byte
	binary.BigEndian.PutUint32(h[0:], length)
	h[4], h[5] = typ, flags
	binary.BigEndian.PutUint32(h[6:], stream)
	return h[:]
}

// AppendFrame appends a frame with payload to b.
func AppendFrame(b []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	b = append(b, FrameHeader(uint32(len(payload)), typ, flags, stream)...)
	return append(b, payload...)
}

// AppendString appends a uvarint length and s.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Headers encodes a request's HEADERS payload: timeout in µs (0: none),
// method, codec name, and metadata as key, value pairs.
func Headers(timeout time.Duration, method, codec string, kv ...string) []byte {
	b := binary.AppendUvarint(nil, uint64(timeout.Microseconds()))
	b = AppendString(b, method)
	b = AppendString(b, codec)
	b = binary.AppendUvarint(b, uint64(len(kv)/2))
	for _, s := range kv {
		b = AppendString(b, s)
	}
	return b
}

// ReadFrame reads one frame; frames over 16 MiB are an error.
func (p *Peer) ReadFrame() (Frame, error) {
	var h [axonwire.HeaderLen]byte
	if _, err := io.ReadFull(p.br, h[:]); err != nil {
		return Frame{}, err
	}
	f := Frame{Type: h[4], Flags: h[5], Stream: binary.BigEndian.Uint32(h[6:])}
	n := binary.BigEndian.Uint32(h[0:])
	if n > 16<<20 {
		return Frame{}, fmt.Errorf("server frame of %d bytes", n)
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(p.br, f.Payload); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// Results reads frames until n streams have had their TRAILERS and returns
// the results by stream id; GOAWAY frames go to goAway when it is not nil.
func (p *Peer) Results(n int, goAway func(last uint32)) map[uint32]Result {
	p.t.Helper()
	out := map[uint32]Result{}
	data := map[uint32][]byte{}
	for len(out) < n {
		f, err := p.ReadFrame()
		if err != nil {
			p.t.Fatalf("reading results (%d of %d so far: %v): %v", len(out), n, out, err)
		}
		switch f.Type {
		case axonwire.FrameData:
			data[f.Stream] = f.Payload
		case axonwire.FrameGoAway:
			last, _, err := uvarint(f.Payload)
			if err != nil {
				p.t.Fatalf("goaway: %v", err)
			}
			if goAway != nil {
				goAway(uint32(last))
			}
		case axonwire.FrameTrailers:
			res, err := ParseTrailers(f)
			if err != nil {
				p.t.Fatal(err)
			}
			res.Data = data[f.Stream]
			out[f.Stream] = res
		}
	}
	return out
}

func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errors.New("bad uvarint")
	}
	return v, b[n:], nil
}

func str(b []byte) (string, []byte, error) {
	n, b, err := uvarint(b)
	if err != nil || n > uint64(len(b)) {
		return "", nil, errors.New("bad string")
	}
	return string(b[:n]), b[n:], nil
}

// ParseTrailers decodes a TRAILERS frame: code, message, metadata.
func ParseTrailers(f Frame) (Result, error) {
	res := Result{Refused: f.Flags&axonwire.FlagRefused != 0, Trailer: map[string]string{}}
	bad := func(err error) (Result, error) { return res, fmt.Errorf("stream %d: trailers: %w", f.Stream, err) }
	code, b, err := uvarint(f.Payload)
	if err != nil {
		return bad(err)
	}
	res.Code = status.Code(code)
	if res.Msg, b, err = str(b); err != nil {
		return bad(err)
	}
	n, b, err := uvarint(b)
	if err != nil {
		return bad(err)
	}
	for range n {
		var k, v string
		if k, b, err = str(b); err == nil {
			v, b, err = str(b)
		}
		if err != nil {
			return bad(err)
		}
		res.Trailer[k] = v
	}
	return res, nil
}

// ExpectClosed reads until the server closes the connection, failing the
// test if it is still open after within.
func (p *Peer) ExpectClosed(within time.Duration) {
	p.t.Helper()
	p.SetReadDeadline(time.Now().Add(within))
	var buf [256]byte
	for {
		_, err := p.br.Read(buf[:])
		if err == nil {
			continue // the server may answer before it hangs up
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p.t.Fatalf("the server did not close the connection within %v: %v", within, err)
		}
		return // EOF, reset or the like: closed
	}
}
