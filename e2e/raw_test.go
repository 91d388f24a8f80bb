package e2e_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel/status"
)

// A raw-byte peer of the native protocol, written from the format described
// in plugins/protocol-axon/wire.go and nothing else.

var axonPreface = []byte("\xa7AXON\r\n\x01")

const (
	ftSettings = 0x1
	ftHeaders  = 0x2
	ftData     = 0x3
	ftTrailers = 0x4
	ftCancel   = 0x5
	ftGoAway   = 0x6

	flEndStream = 0x1
	flRefused   = 0x2
)

type frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

// rawConn is a hand-driven connection to a server.
type rawConn struct {
	t testing.TB
	net.Conn
	br *bufio.Reader
}

// dialRaw connects to addr ("tcp://host:port" or "host:port") without
// sending anything. Every read and write is bounded by the test timeout.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", hostPort(addr), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, Conn: c, br: bufio.NewReader(c)}
}

// handshake sends the client preface and a SETTINGS frame, and reads the
// server's preface and SETTINGS, returned as id -> value.
func (r *rawConn) handshake() map[uint64]uint64 {
	r.t.Helper()
	r.write(axonPreface)
	r.writeFrame(ftSettings, 0, 0, nil)
	pre := make([]byte, len(axonPreface))
	if _, err := io.ReadFull(r.br, pre); err != nil {
		r.t.Fatalf("read server preface: %v", err)
	}
	if string(pre) != string(axonPreface) {
		r.t.Fatalf("server preface %q", pre)
	}
	f, err := r.readFrame()
	if err != nil {
		r.t.Fatalf("read server settings: %v", err)
	}
	if f.typ != ftSettings || f.stream != 0 {
		r.t.Fatalf("first server frame is type %d on stream %d, want SETTINGS on 0", f.typ, f.stream)
	}
	settings := map[uint64]uint64{}
	for b := f.payload; len(b) > 0; {
		id, n := binary.Uvarint(b)
		if n <= 0 {
			r.t.Fatalf("bad settings payload %x", f.payload)
		}
		v, m := binary.Uvarint(b[n:])
		if m <= 0 {
			r.t.Fatalf("bad settings payload %x", f.payload)
		}
		settings[id] = v
		b = b[n+m:]
	}
	return settings
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func frameHeader(length uint32, typ, flags byte, stream uint32) []byte {
	var h [10]byte
	binary.BigEndian.PutUint32(h[0:], length)
	h[4], h[5] = typ, flags
	binary.BigEndian.PutUint32(h[6:], stream)
	return h[:]
}

func appendFrame(b []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	b = append(b, frameHeader(uint32(len(payload)), typ, flags, stream)...)
	return append(b, payload...)
}

func (r *rawConn) writeFrame(typ, flags byte, stream uint32, payload []byte) {
	r.t.Helper()
	r.write(appendFrame(nil, typ, flags, stream, payload))
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// headersPayload encodes a request's HEADERS: timeout (µs, 0 for none),
// method, codec and metadata as key, value pairs.
func headersPayload(timeout time.Duration, method, codec string, kv ...string) []byte {
	b := binary.AppendUvarint(nil, uint64(timeout.Microseconds()))
	b = appendStr(b, method)
	b = appendStr(b, codec)
	b = binary.AppendUvarint(b, uint64(len(kv)/2))
	for _, s := range kv {
		b = appendStr(b, s)
	}
	return b
}

// callFrames returns HEADERS + DATA(END_STREAM) for a SayRequest.
func callFrames(stream uint32, timeout time.Duration, method, codec, text string, kv ...string) []byte {
	msg, err := proto.Marshal(&echopb.SayRequest{Text: text})
	if err != nil {
		panic(err)
	}
	b := appendFrame(nil, ftHeaders, 0, stream, headersPayload(timeout, method, codec, kv...))
	return appendFrame(b, ftData, flEndStream, stream, msg)
}

func (r *rawConn) readFrame() (frame, error) {
	var h [10]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{typ: h[4], flags: h[5], stream: binary.BigEndian.Uint32(h[6:])}
	n := binary.BigEndian.Uint32(h[0:])
	if n > 16<<20 {
		return frame{}, fmt.Errorf("server frame of %d bytes", n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r.br, f.payload); err != nil {
		return frame{}, err
	}
	return f, nil
}

// result is one call's outcome as the raw peer saw it.
type result struct {
	code    status.Code
	msg     string
	refused bool
	text    string // the response message's text, if any
	trailer map[string]string
}

// readResults reads frames until n streams have had their TRAILERS, and
// returns the results by stream id.
func (r *rawConn) readResults(n int) map[uint32]result {
	r.t.Helper()
	out := map[uint32]result{}
	data := map[uint32][]byte{}
	for len(out) < n {
		f, err := r.readFrame()
		if err != nil {
			r.t.Fatalf("reading results (%d of %d so far): %v", len(out), n, err)
		}
		switch f.typ {
		case ftData:
			data[f.stream] = f.payload
		case ftTrailers:
			res, err := parseTrailers(f)
			if err != nil {
				r.t.Fatal(err)
			}
			if d, ok := data[f.stream]; ok {
				var m echopb.SayResponse
				if err := proto.Unmarshal(d, &m); err != nil {
					r.t.Fatalf("stream %d: response: %v", f.stream, err)
				}
				res.text = m.GetText()
			}
			out[f.stream] = res
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

func parseTrailers(f frame) (result, error) {
	res := result{refused: f.flags&flRefused != 0, trailer: map[string]string{}}
	code, b, err := uvarint(f.payload)
	if err != nil {
		return res, fmt.Errorf("stream %d: trailers: %w", f.stream, err)
	}
	res.code = status.Code(code)
	if res.msg, b, err = str(b); err != nil {
		return res, fmt.Errorf("stream %d: trailers: %w", f.stream, err)
	}
	n, b, err := uvarint(b)
	if err != nil {
		return res, fmt.Errorf("stream %d: trailers: %w", f.stream, err)
	}
	for range n {
		var k, v string
		if k, b, err = str(b); err == nil {
			v, b, err = str(b)
		}
		if err != nil {
			return res, fmt.Errorf("stream %d: trailers: %w", f.stream, err)
		}
		res.trailer[k] = v
	}
	return res, nil
}

// expectClosed reads until the server closes the connection and fails the
// test if it sends anything else meanwhile or keeps it open past the test
// timeout.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	var buf [256]byte
	for {
		n, err := r.br.Read(buf[:])
		if err == nil {
			r.t.Logf("server sent %d more bytes before closing", n)
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.t.Fatalf("server did not close the connection: %v", err)
		}
		return // EOF or reset: closed
	}
}
