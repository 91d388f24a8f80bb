// Package axonwire holds the vocabulary of the native Axon protocol's wire
// format, version 1: the connection preface, the frame header's length, and
// the numbers of frame types, flags and SETTINGS ids. It has constants only;
// encoding and decoding stay with their users.
//
// It lives in the kernel, not in plugins/protocol-axon, because the native
// protocol is the framework's own and more than its plugin speaks it: the
// kernel's conformance suite (kernel/transporttest) drives raw frames at a
// server, and the kernel imports no plugin. The plugin (the implementation),
// transporttest and the end-to-end tests all take these numbers from here,
// so they are written once. The format itself is described in
// plugins/protocol-axon/README.md.
//
// Both sides start with Preface, then a SETTINGS frame. Every frame has a
// HeaderLen-byte header: payload length (uint32, big endian), type (1 byte),
// flags (1 byte), stream id (uint32); then the payload. Stream 0 is the
// connection itself.
package axonwire

// Version is the wire format's version, the last byte of Preface.
const Version = 1

// Magic is the preface without its version byte. Its first byte, 0xa7, is
// neither ASCII (HTTP/1), 'P' (the HTTP/2 preface) nor 0x16 (a TLS
// handshake), so one port can tell the protocols apart by their first bytes.
const Magic = "\xa7AXON\r\n"

// Preface is what each side sends first: Magic, then Version.
const Preface = Magic + string(rune(Version))

// PrefaceLen is the length of Preface in bytes.
const PrefaceLen = len(Preface)

// HeaderLen is the length of a frame header in bytes.
const HeaderLen = 10

// Frame types.
const (
	FrameSettings = 0x1 // stream 0: uvarint (id, value) pairs
	FrameHeaders  = 0x2 // request: uvarint timeout µs (0 none), method, codec, metadata; response: metadata
	FrameData     = 0x3 // one message
	FrameTrailers = 0x4 // server's last frame: uvarint code, message, metadata
	FrameCancel   = 0x5 // client gave up: uvarint code
	FrameGoAway   = 0x6 // stream 0: uvarint last stream id, uvarint code, message
	FramePing     = 0x7 // stream 0: 8 opaque bytes, echoed with FlagAck
	FrameWindow   = 0x8 // WINDOW_UPDATE, streaming calls only: uvarint bytes granted to the receiver of this frame
)

// Frame flags; their meaning depends on the frame type.
const (
	FlagEndStream = 0x1 // DATA: the sender's last message on the stream
	FlagRefused   = 0x2 // TRAILERS: the call was not processed; safe to retry
	FlagAck       = 0x1 // PING: this is the reply
	FlagStream    = 0x2 // HEADERS: the client opened a stream (flow-controlled; it half-closes)
	FlagNoMessage = 0x2 // DATA: the frame carries no message (END_STREAM alone: a half-close)
	FlagBlocked   = 0x4 // DATA: the sender's credit for the stream ran out with this frame
)

// SETTINGS ids. A receiver ignores ids it does not know.
const (
	SettingMaxMessage    = 1 // the largest message the sender accepts, in bytes
	SettingMaxStreams    = 2 // the most concurrent calls the sender accepts on the connection
	SettingMaxHeaderSize = 3 // the largest header block (metadata) the sender accepts, in bytes
	SettingStreamWindow  = 4 // the sender's initial receive window per stream, in bytes
)
