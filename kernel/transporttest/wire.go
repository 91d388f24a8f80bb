package transporttest

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel/axonwire"
	"github.com/axonrpc/axon/kernel/status"
)

// The raw-byte tests drive a Peer (peer.go) through rawConn, which adds the
// fixture's codec and test service.

// Short names for the native protocol's numbers (package axonwire).
const (
	ftHeaders = axonwire.FrameHeaders
	ftData    = axonwire.FrameData
	ftCancel  = axonwire.FrameCancel
	ftGoAway  = axonwire.FrameGoAway
	ftPing    = axonwire.FramePing

	flEndStream = axonwire.FlagEndStream
	flAck       = axonwire.FlagAck

	settingMaxMessage = axonwire.SettingMaxMessage
	settingMaxStreams = axonwire.SettingMaxStreams
)

var (
	frameHeader = FrameHeader
	appendFrame = AppendFrame
)

type frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

// rawConn is a connection dialed through the transport and driven by hand.
type rawConn struct {
	*Peer
	t testing.TB
	f *fixture
}

// raw dials the fixture with the client transport without sending anything.
func (f *fixture) raw(t testing.TB) *rawConn {
	t.Helper()
	return &rawConn{Peer: NewPeer(t, f.h.dial(t, f.addr)), t: t, f: f}
}

func (r *rawConn) handshake() map[uint64]uint64 { r.t.Helper(); return r.Handshake() }
func (r *rawConn) write(b []byte)               { r.t.Helper(); r.Send(b) }
func (r *rawConn) expectClosed()                { r.t.Helper(); r.ExpectClosed(timeout) }

func (r *rawConn) readFrame() (frame, error) {
	f, err := r.ReadFrame()
	return frame{typ: f.Type, flags: f.Flags, stream: f.Stream, payload: f.Payload}, err
}

// headers encodes a request's HEADERS payload with no metadata.
func headers(timeout time.Duration, method, codec string) []byte {
	return Headers(timeout, method, codec)
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
	for id, res := range r.Results(n, goAway) {
		out[id] = result{code: res.Code, msg: res.Msg, refused: res.Refused, data: res.Data}
	}
	return out
}
