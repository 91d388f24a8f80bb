package native

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"reflect"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
)

var fuzzAllocSample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}

func fuzzAllocated() uint64 {
	metrics.Read(fuzzAllocSample)
	return fuzzAllocSample[0].Value.Uint64()
}

// fuzzFrame is a frame as bytes: header and payload.
func fuzzFrame(typ, flags byte, stream uint32, payload []byte) []byte {
	return append(appendHeader(nil, len(payload), typ, flags, stream), payload...)
}

// fuzzHeadersPayload is a request HEADERS payload.
func fuzzHeadersPayload(timeout uint64, method, codec string, md metadata.MD) []byte {
	b := binary.AppendUvarint(nil, timeout)
	b = appendString(b, method)
	b = appendString(b, codec)
	return appendMD(b, md)
}

var fuzzFrameSeeds = [][]byte{
	fuzzFrame(frameHeaders, 0, 1, fuzzHeadersPayload(1000, "/fuzz.Svc/Echo", "raw", metadata.New("k", "v"))),
	fuzzFrame(frameTrailers, flagRefused, 1, append(appendString(binary.AppendUvarint(nil, 14), "going away"), 0)),
	fuzzFrame(frameGoAway, 0, 0, append(binary.AppendUvarint(nil, 7), 14, 0)),
	fuzzFrame(frameSettings, 0, 0, []byte{settingMaxMessage, 0x80, 0x80, 0x01, settingMaxStreams, 100}),
	fuzzFrame(frameHeaders, 0, 1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), // varint of 11 bytes
	fuzzFrame(frameHeaders, 0, 1, []byte{0x00, 0x7f, 'a'}),                                                  // length over the payload
	fuzzFrame(frameHeaders, 0, 1, []byte{0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), // "negative" length
	fuzzFrame(frameHeaders, 0, 1, []byte{0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f}),                   // metadata count over the payload
	fuzzFrame(frameTrailers, 0, 1, []byte{0x0d}),                                                            // truncated
	{0x00, 0x00, 0x00}, // shorter than a header
	{0xff, 0xff, 0xff, 0xff, frameData, 0, 0, 0, 0, 1},                                                                                     // 4 GiB claimed
	append(fuzzFrame(framePing, 0, 0, make([]byte, 8)), fuzzFrame(frameCancel, 0, 1, []byte{8})...),                                        // two frames
	fuzzFrame(frameHeaders, 0, 1, fuzzHeadersPayload(0, "/fuzz.Svc/Echo", "raw", metadata.New("a", "1", "a", "2"))),                        // repeated key
	fuzzFrame(0x7f, 0xff, 0xffffffff, []byte("an unknown frame type")),                                                                     // skipped
	fuzzFrame(frameData, flagEndStream, 1, []byte("data without headers")),                                                                 // no stream
	append(fuzzFrame(frameHeaders, 0, 3, fuzzHeadersPayload(0, "/fuzz.Svc/Echo", "raw", nil)), fuzzFrame(frameData, 0, 3, []byte("x"))...), // no END_STREAM
	fuzzFrame(frameWindow, 0, 1, binary.AppendUvarint(nil, 65536)),                                                                         // WINDOW_UPDATE on no stream
	fuzzFrame(frameWindow, 0, 1, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}),                                       // the largest increment
	fuzzFrame(frameWindow, 0, 1, make([]byte, 11)),                                                                                         // too long
	fuzzFrame(frameHeaders, flagStream, 1, appendString(fuzzHeadersPayload(0, "/fuzz.Svc/Chat", "raw", nil), "fingerprint")),               // stream with a schema
	// A stream: HEADERS, two messages, a window update, a half-close.
	concat(
		fuzzFrame(frameHeaders, flagStream, 1, fuzzHeadersPayload(1000, "/fuzz.Svc/Chat", "raw", nil)),
		fuzzFrame(frameData, 0, 1, []byte("one")),
		fuzzFrame(frameData, 0, 1, []byte("two")),
		fuzzFrame(frameWindow, 0, 1, binary.AppendUvarint(nil, 1<<20)),
		fuzzFrame(frameData, flagEndStream|flagNoMessage, 1, nil),
		fuzzFrame(frameData, 0, 1, []byte("after the half-close")),
	),
	// A stream cancelled, then DATA on it.
	concat(
		fuzzFrame(frameHeaders, flagStream, 1, fuzzHeadersPayload(0, "/fuzz.Svc/Chat", "raw", nil)),
		fuzzFrame(frameCancel, 0, 1, []byte{1}),
		fuzzFrame(frameData, 0, 1, []byte("late")),
	),
	// A stream whose client marks its DATA as out of credit (BLOCKED),
	// and a PING answer carrying the drain payload that nobody asked for.
	concat(
		fuzzFrame(frameHeaders, flagStream, 1, fuzzHeadersPayload(0, "/fuzz.Svc/Chat", "raw", nil)),
		fuzzFrame(frameData, flagBlocked, 1, []byte("blocked")),
		fuzzFrame(frameData, flagBlocked|flagEndStream, 1, []byte("blocked and done")),
		fuzzFrame(framePing, flagAck, 0, drainPing[:]),
	),
	// A unary method opened as a stream.
	concat(
		fuzzFrame(frameHeaders, flagStream, 1, fuzzHeadersPayload(0, "/fuzz.Svc/Echo", "raw", nil)),
		fuzzFrame(frameData, flagEndStream, 1, []byte("hello")),
	),
}

func concat(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	return b
}

// FuzzFrameDecoder decodes one frame's payload the way the client and the
// server decode each control frame: never a panic, never more allocation
// than a small multiple of the payload, and what decodes re-encodes to
// the same values.
//
//	go test ./plugins/protocol-axon -run '^$' -fuzz FuzzFrameDecoder -fuzztime 30s
func FuzzFrameDecoder(f *testing.F) {
	for _, s := range fuzzFrameSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < headerLen {
			return
		}
		h := parseHeader(frame)
		payload := frame[headerLen:]
		if uint64(h.length) < uint64(len(payload)) {
			payload = payload[:h.length] // the frame's own bytes
		}
		before := fuzzAllocated()

		// HEADERS of a request, as the server reads it.
		d := decoder{b: payload}
		timeout, method, codec, md := d.uvarint(), d.bytes(), d.bytes(), d.md()
		if d.err == nil {
			d2 := decoder{b: fuzzHeadersPayload(timeout, string(method), string(codec), md)}
			timeout2, method2, codec2, md2 := d2.uvarint(), d2.bytes(), d2.bytes(), d2.md()
			if d2.err != nil || timeout2 != timeout || string(method2) != string(method) || string(codec2) != string(codec) || !reflect.DeepEqual(md, md2) {
				t.Fatalf("headers do not survive re-encoding: %v", d2.err)
			}
		} else if d.err != errMalformed {
			t.Fatalf("unclear error %v", d.err)
		}

		// TRAILERS, GOAWAY and SETTINGS, as the client reads them.
		d = decoder{b: payload}
		d.uvarint()
		d.bytes()
		d.md()
		d = decoder{b: payload}
		_ = clampUint32(d.uvarint()) // as SETTINGS values are read
		// WINDOW_UPDATE, as both sides read it.
		readWindowUpdate(bytes.NewReader(payload), frameHeader{length: uint32(len(payload)), typ: frameWindow})
		d = decoder{b: payload}
		for len(d.b) > 0 && d.err == nil {
			d.uvarint()
			_ = clampUint32(d.uvarint())
		}

		if used := fuzzAllocated() - before; used > 1<<20+64*uint64(len(payload)) {
			t.Fatalf("decoding a %d-byte payload allocated %d bytes", len(payload), used)
		}
	})
}

// rawMsg is a message carried as its bytes by rawCodec.
type rawMsg struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Name() string { return "raw" }
func (rawCodec) Marshal(dst []byte, v any) ([]byte, error) {
	return append(dst, v.(*rawMsg).b...), nil
}
func (rawCodec) Unmarshal(src []byte, v any) error {
	v.(*rawMsg).b = append([]byte(nil), src...)
	return nil
}

// FuzzServeConn sends the preface and then arbitrary bytes to a real
// server connection: whatever arrives, the server must neither panic nor
// hang, and must return once the peer has gone.
//
//	go test ./plugins/protocol-axon -run '^$' -fuzz FuzzServeConn -fuzztime 30s
func FuzzServeConn(f *testing.F) {
	for _, s := range fuzzFrameSeeds {
		f.Add(s)
	}
	f.Add(append(fuzzFrame(frameHeaders, 0, 1, fuzzHeadersPayload(0, "/fuzz.Svc/Echo", "raw", nil)),
		fuzzFrame(frameData, flagEndStream, 1, []byte("hello"))...))
	f.Add(append(fuzzFrame(frameHeaders, 0, 1, fuzzHeadersPayload(0, "/fuzz.Svc/Echo", "nope", nil)),
		fuzzFrame(frameData, flagEndStream, 1, []byte("unknown codec"))...))
	f.Add(append(fuzzFrame(frameHeaders, 0, 1, fuzzHeadersPayload(0, "/fuzz.Svc/Missing", "raw", nil)),
		fuzzFrame(frameData, flagEndStream, 1, nil)...))

	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{kernel.NewService("fuzz.Svc",
		kernel.Unary("Echo", func(_ context.Context, m *rawMsg) (*rawMsg, error) { return m, nil }),
		kernel.BidiStreaming("Chat", func(s kernel.BidiStreamingServer[rawMsg, rawMsg]) error {
			for {
				m, err := s.Recv()
				if err != nil {
					if err == io.EOF {
						return nil
					}
					return err
				}
				if err := s.Send(m); err != nil {
					return err
				}
			}
		}))})
	if err != nil {
		f.Fatal(err)
	}
	limits := kernel.Limits{MaxMessage: 64 << 10, MaxMetadata: 4 << 10, HandshakeTimeout: time.Second}
	d := kernel.NewDispatcher(table, nil, []kernel.Codec{rawCodec{}}, limits, slog.New(slog.DiscardHandler))
	f.Fuzz(func(t *testing.T, in []byte) {
		srv := New(DefaultConfig()).NewServer(d)
		client, conn := net.Pipe()
		served := make(chan struct{})
		go func() { srv.ServeConn(conn); close(served) }()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(preface[:])
		client.Write(in)
		client.Close()
		select {
		case <-served:
		case <-time.After(5 * time.Second): // the fuzzer's own limit is 10s
			t.Fatal("ServeConn did not return after the peer closed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
}
