package native

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/axonrpc/axon/kernel/axonwire"
	"github.com/axonrpc/axon/kernel/metadata"
)

// Wire format (version 1); the numbers are kernel/axonwire's, which this
// package uses under the short names below. Both sides start with the 8-byte
// preface "\xa7AXON\r\n" + version, then a SETTINGS frame. The first byte
// 0xa7 is neither ASCII (HTTP/1), 'P' (the HTTP/2 preface) nor 0x16 (a TLS
// handshake), so one port can tell the protocols apart by their first bytes.
//
// Every frame has a 10-byte header: payload length (uint32, big endian),
// type (1 byte), flags (1 byte), stream id (uint32); then the payload.
// Clients number streams 1, 2, 3, ... on each connection; stream 0 is the
// connection itself. A unary call is HEADERS + DATA(END_STREAM) from the
// client, and [HEADERS] + DATA + TRAILERS from the server, all in one write
// when possible. Strings are a uvarint length and bytes; metadata is a
// uvarint count of key, value string pairs.
//
// A streaming call is HEADERS with flagStream, then any number of DATA
// frames each way; the client half-closes with DATA(END_STREAM|NO_MESSAGE)
// and the server ends the call with TRAILERS. Each side of a stream grants
// the other a window of bytes (see flow.go); WINDOW_UPDATE frames grant more
// as messages are consumed.
const (
	prefaceLen = axonwire.PrefaceLen
	headerLen  = axonwire.HeaderLen
	version    = axonwire.Version
)

var preface = [prefaceLen]byte([]byte(axonwire.Preface))

// Frame types (see axonwire for their payloads).
const (
	frameSettings = axonwire.FrameSettings
	frameHeaders  = axonwire.FrameHeaders
	frameData     = axonwire.FrameData
	frameTrailers = axonwire.FrameTrailers
	frameCancel   = axonwire.FrameCancel
	frameGoAway   = axonwire.FrameGoAway
	framePing     = axonwire.FramePing
	frameWindow   = axonwire.FrameWindow
)

// Frame flags; their meaning depends on the frame type.
const (
	flagEndStream = axonwire.FlagEndStream // DATA
	flagRefused   = axonwire.FlagRefused   // TRAILERS
	flagAck       = axonwire.FlagAck       // PING
	flagStream    = axonwire.FlagStream    // HEADERS
	flagNoMessage = axonwire.FlagNoMessage // DATA
	flagBlocked   = axonwire.FlagBlocked   // DATA
)

// Settings ids.
const (
	settingMaxMessage    = axonwire.SettingMaxMessage
	settingMaxStreams    = axonwire.SettingMaxStreams
	settingMaxHeaderSize = axonwire.SettingMaxHeaderSize
	settingStreamWindow  = axonwire.SettingStreamWindow
)

var errMalformed = errors.New("malformed frame payload")

func appendHeader(b []byte, length int, typ, flags byte, stream uint32) []byte {
	return append(b, byte(length>>24), byte(length>>16), byte(length>>8), byte(length), typ, flags,
		byte(stream>>24), byte(stream>>16), byte(stream>>8), byte(stream))
}

type frameHeader struct {
	length uint32
	typ    byte
	flags  byte
	stream uint32
}

func parseHeader(b []byte) frameHeader {
	return frameHeader{
		length: binary.BigEndian.Uint32(b[0:4]),
		typ:    b[4],
		flags:  b[5],
		stream: binary.BigEndian.Uint32(b[6:10]),
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendMD appends md, without the keys gRPC reserves for itself (see
// reserved), so that a handler or client sees the same metadata over the
// native protocol as over gRPC.
func appendMD(b []byte, md metadata.MD) []byte {
	n := 0
	for k, vs := range md {
		if !reserved(k) {
			n += len(vs)
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for k, vs := range md {
		if reserved(k) {
			continue
		}
		for _, v := range vs {
			b = appendString(b, k)
			b = appendString(b, v)
		}
	}
	return b
}

// decoder reads a payload; every read checks the bytes left first, so a
// hostile length can never make it slice out of range or allocate.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errMalformed
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns the next string's bytes, aliasing the payload.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errMalformed
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) md() metadata.MD {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return nil
	}
	// Each pair takes at least two bytes, which bounds n by the payload.
	if n > uint64(len(d.b)/2) {
		d.err = errMalformed
		return nil
	}
	md := make(metadata.MD, min(n, 16))
	for range n {
		k, v := d.bytes(), d.bytes()
		if d.err != nil {
			return nil
		}
		key := string(k)
		md[key] = append(md[key], string(v))
	}
	return md
}

// clampUint32 converts a setting to uint32, saturating.
func clampUint32(v uint64) uint32 {
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// setLength fills in the length of the frame whose header starts at start
// and which runs to the end of b.
func setLength(b []byte, start int) []byte {
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-headerLen))
	return b
}

// readPing reads a PING's 8-byte payload and, unless the PING is itself an
// answer (flagAck), answers it through w. A payload of other than 8 bytes
// is a connection error.
//
// hard, when above 0, bounds the connection's output backlog under which
// the answer is queued (see writer.tryWrite); over it, readPing returns
// errBacklog.
func readPing(r io.Reader, h frameHeader, w *writer, hard int) (payload [8]byte, err error) {
	if h.length != 8 {
		return payload, fmt.Errorf("ping payload of %d bytes, want 8", h.length)
	}
	if _, err := io.ReadFull(r, payload[:]); err != nil {
		return payload, err
	}
	if h.flags&flagAck == 0 {
		fill := func(b []byte) []byte { return append(appendHeader(b, 8, framePing, flagAck, 0), payload[:]...) }
		if hard > 0 {
			if err := w.tryWrite(fill, hard); errors.Is(err, errBacklog) {
				return payload, err
			}
		} else {
			w.write(fill)
		}
	}
	return payload, nil
}

// readWindowUpdate reads a WINDOW_UPDATE payload and returns its increment.
// A payload longer than a uvarint can be is a connection error.
func readWindowUpdate(r io.Reader, h frameHeader) (uint64, error) {
	if h.length > binary.MaxVarintLen64 {
		return 0, fmt.Errorf("window update of %d bytes, want at most %d", h.length, binary.MaxVarintLen64)
	}
	var p [binary.MaxVarintLen64]byte
	if _, err := io.ReadFull(r, p[:h.length]); err != nil {
		return 0, err
	}
	d := decoder{b: p[:h.length]}
	inc := d.uvarint()
	if d.err != nil {
		return 0, fmt.Errorf("stream %d: window update: %w", h.stream, d.err)
	}
	return inc, nil
}

// reserved reports whether key is one of gRPC's own ("grpc-" prefix), which
// gRPC never delivers as metadata. grpc-status-details-bin passes: handlers
// set it as a trailer to send status details.
func reserved(key string) bool {
	return len(key) >= 5 && key[:5] == "grpc-" && key != "grpc-status-details-bin"
}
