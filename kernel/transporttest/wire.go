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

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel/status"
)

// A raw-byte peer of the native Axon protocol, version 1, written from the
// wire format in plugins/protocol-axon/README.md: an 8-byte preface, then
// frames with a 10-byte header (length uint32 BE, type, flags, stream id
// uint32 BE).

var preface = []byte("\xa7AXON\r\n\x01")

const (
	ftSettings = 0x1
	ftHeaders  = 0x2
	ftData     = 0x3
	ftTrailers = 0x4
	ftCancel   = 0x5
	ftGoAway   = 0x6

	flEndStream = 0x1
	flRefused   = 0x2

	settingMaxMessage = 1
	settingMaxStreams = 2
)

type frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

// rawConn is a connection dialed through the transport and driven by hand.
type rawConn struct {
	t testing.TB
	f *fixture
	net.Conn
	br *bufio.Reader
}

// raw dials the fixture with the client transport without sending anything.
func (f *fixture) raw(t testing.TB) *rawConn {
	t.Helper()
	c := f.h.dial(t, f.addr)
	return &rawConn{t: t, f: f, Conn: c, br: bufio.NewReader(c)}
}

// handshake exchanges prefaces and SETTINGS and returns the server's
// settings as id -> value.
func (r *rawConn) handshake() map[uint64]uint64 {
	r.t.Helper()
	r.write(appendFrame(append([]byte(nil), preface...), ftSettings, 0, 0, nil))
	pre := make([]byte, len(preface))
	if _, err := io.ReadFull(r.br, pre); err != nil {
		r.t.Fatalf("read the server's preface: %v", err)
	}
	if string(pre) != string(preface) {
		r.t.Fatalf("server preface %q", pre)
	}
	f, err := r.readFrame()
	if err != nil {
		r.t.Fatalf("read the server's settings: %v", err)
	}
	if f.typ != ftSettings || f.stream != 0 {
		r.t.Fatalf("first server frame is type %d on stream %d, want SETTINGS on 0", f.typ, f.stream)
	}
	settings := map[uint64]uint64{}
	for b := f.payload; len(b) > 0; {
		var id, v uint64
		var err error
		if id, b, err = uvarint(b); err == nil {
			v, b, err = uvarint(b)
		}
		if err != nil {
			r.t.Fatalf("bad settings payload %x", f.payload)
		}
		settings[id] = v
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

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// headers encodes a request's HEADERS payload: timeout in µs (0: none),
// method, codec name, and no metadata.
func headers(timeout time.Duration, method, codec string) []byte {
	b := binary.AppendUvarint(nil, uint64(timeout.Microseconds()))
	b = appendStr(b, method)
	b = appendStr(b, codec)
	return binary.AppendUvarint(b, 0)
}

// call returns HEADERS + DATA(END_STREAM) of a call to method with msg.
func (r *rawConn) call(stream uint32, method string, msg any) []byte {
	r.t.Helper()
	data, err := r.f.h.Codec.Marshal(nil, msg)
	if err != nil {
		r.t.Fatal(err)
	}
	b := appendFrame(nil, ftHeaders, 0, stream, headers(0, method, r.f.h.Codec.Name()))
	return appendFrame(b, ftData, flEndStream, stream, data)
}

// block returns the frames of a Block call with token.
func (r *rawConn) block(stream uint32, token string) []byte {
	return r.call(stream, mBlock, wrapperspb.String(token))
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
	data    []byte // the response message, if any
}

// text decodes the response as a StringValue.
func (r *rawConn) text(res result) string {
	var m wrapperspb.StringValue
	if err := r.f.h.Codec.Unmarshal(res.data, &m); err != nil {
		r.t.Fatalf("response: %v", err)
	}
	return m.GetValue()
}

// results reads frames until n streams have had their TRAILERS; GOAWAY
// frames are passed to goAway if it is not nil.
func (r *rawConn) results(n int, goAway func(last uint32)) map[uint32]result {
	r.t.Helper()
	out := map[uint32]result{}
	data := map[uint32][]byte{}
	for len(out) < n {
		f, err := r.readFrame()
		if err != nil {
			r.t.Fatalf("reading results (%d of %d so far: %v): %v", len(out), n, out, err)
		}
		switch f.typ {
		case ftData:
			data[f.stream] = f.payload
		case ftGoAway:
			last, _, err := uvarint(f.payload)
			if err != nil {
				r.t.Fatalf("goaway: %v", err)
			}
			if goAway != nil {
				goAway(uint32(last))
			}
		case ftTrailers:
			res, err := parseTrailers(f)
			if err != nil {
				r.t.Fatal(err)
			}
			res.data = data[f.stream]
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

func parseTrailers(f frame) (result, error) {
	res := result{refused: f.flags&flRefused != 0}
	code, b, err := uvarint(f.payload)
	if err != nil {
		return res, fmt.Errorf("stream %d: trailers: %w", f.stream, err)
	}
	res.code = status.Code(code)
	n, b, err := uvarint(b)
	if err != nil || n > uint64(len(b)) {
		return res, fmt.Errorf("stream %d: trailers: bad message", f.stream)
	}
	res.msg = string(b[:n])
	return res, nil
}

// expectClosed reads until the server closes the connection, failing the
// test if it is still open when the read deadline passes.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	r.SetReadDeadline(time.Now().Add(timeout))
	var buf [256]byte
	for {
		_, err := r.br.Read(buf[:])
		if err == nil {
			continue // the server may answer before it hangs up
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			r.t.Fatalf("the server did not close the connection within %v: %v", timeout, err)
		}
		return // EOF, reset or the like: closed
	}
}
