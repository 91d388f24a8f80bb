package e2e_test

import (
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel/axonwire"
	"github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/kernel/transporttest"
)

// The raw-byte tests drive a transporttest.Peer through rawConn, which adds
// the example's messages.

// Short names for the native protocol's numbers (package axonwire).
const (
	axonPreface = axonwire.Preface

	ftSettings = axonwire.FrameSettings
	ftHeaders  = axonwire.FrameHeaders
	ftData     = axonwire.FrameData
	ftTrailers = axonwire.FrameTrailers
	ftCancel   = axonwire.FrameCancel
	ftGoAway   = axonwire.FrameGoAway
	ftWindow   = axonwire.FrameWindow

	flEndStream = axonwire.FlagEndStream
	flRefused   = axonwire.FlagRefused
	flStream    = axonwire.FlagStream    // HEADERS: the client opens a stream
	flNoMessage = axonwire.FlagNoMessage // DATA: END_STREAM alone, a half-close

	settingMaxMessage = axonwire.SettingMaxMessage
	settingMaxStreams = axonwire.SettingMaxStreams
)

var (
	frameHeader    = transporttest.FrameHeader
	appendFrame    = transporttest.AppendFrame
	appendStr      = transporttest.AppendString
	headersPayload = transporttest.Headers // timeout, method, codec, metadata pairs
)

type frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

// rawConn is a hand-driven connection to a server.
type rawConn struct {
	*transporttest.Peer
	t testing.TB
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
	return &rawConn{Peer: transporttest.NewPeer(t, c), t: t}
}

func (r *rawConn) handshake() map[uint64]uint64 { r.t.Helper(); return r.Handshake() }
func (r *rawConn) write(b []byte)               { r.t.Helper(); r.Send(b) }
func (r *rawConn) expectClosed()                { r.t.Helper(); r.ExpectClosed(testTimeout) }

func (r *rawConn) writeFrame(typ, flags byte, stream uint32, payload []byte) {
	r.t.Helper()
	r.write(appendFrame(nil, typ, flags, stream, payload))
}

func (r *rawConn) readFrame() (frame, error) {
	f, err := r.ReadFrame()
	return frame{typ: f.Type, flags: f.Flags, stream: f.Stream, payload: f.Payload}, err
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
	for id, res := range r.Results(n, nil) {
		out[id] = result{code: res.Code, msg: res.Msg, refused: res.Refused, trailer: res.Trailer}
		if res.Data != nil {
			var m echopb.SayResponse
			if err := proto.Unmarshal(res.Data, &m); err != nil {
				r.t.Fatalf("stream %d: response: %v", id, err)
			}
			out[id] = result{code: res.Code, msg: res.Msg, refused: res.Refused, trailer: res.Trailer, text: m.GetText()}
		}
	}
	return out
}
