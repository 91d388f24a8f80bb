package grpc

import (
	"errors"
	"sync/atomic"
	"time"
)

// Frame budgets for HTTP/2 on cleartext connections.
//
// net/http's HTTP/2 server answers every SETTINGS and PING, and processes
// every RST_STREAM, WINDOW_UPDATE, PRIORITY and unknown frame, with no
// limit a server can set: a peer that floods them costs this side CPU (and
// ack writes) for next to nothing on its own. Below net/http, a plaintext
// connection's reads pass through countingReader (liveview.go) once per
// read system call; frameScanner looks at those bytes as they stream by:
// after the 24-byte client preface it parses each 9-byte frame header
// (length, type, flags, stream id) and skips the payload without copying
// or buffering it, and it charges a per-connection token bucket
// (ControlFrameRate per second, a burst of as many) for the frames that do
// no work:
//
//   - SETTINGS that are not acks;
//   - PING that are not acks, unless the server wrote something other than
//     ping acks since the previous one: a client measuring the bandwidth
//     of data it receives (grpc-go's BDP pings, one per round trip while
//     data flows) is not charged, a ping flood is;
//   - RST_STREAM (a rapid-reset loop is HEADERS, RST_STREAM, ...);
//   - PRIORITY, and frame types HTTP/2 does not define;
//   - WINDOW_UPDATE on the connection (stream 0), unless the server wrote
//     something other than ping acks since the previous one (a client
//     acknowledging data it received is not charged);
//   - empty DATA frames that do not end their stream.
//
// "Something other than ping acks" is measured from the bytes written
// (trackedConn counts them): each PING received owes a 17-byte ack, and a
// PING is free only when the bytes written minus the acks owed rose since
// the previous PING, a WINDOW_UPDATE when they rose above their level at
// the previous one. Acks written late can make some PINGs of a flood free
// (their sum over a flood is zero: at most about half), never a legitimate
// one charged unless the server wrote nothing else in between.
//
// A connection over budget is closed: its read returns errControlFlood, so
// net/http tears it down as for any read error and fails its calls. No
// GOAWAY is sent: net/http's writer owns the connection's writes, and a
// frame written from here would race it.
//
// A *tls.Conn reaches net/http unwrapped (see server), so HTTP/2 over TLS
// is not scanned: that gap closes when the gRPC server moves to Axon's own
// HTTP/2.
type frameScanner struct {
	state    uint8 // scanPreface, scanFrames or scanOff
	matched  int   // preface bytes matched
	skip     int   // payload bytes of the current frame still to skip
	hn       int   // header bytes held in hdr
	hdr      [frameHeaderLen]byte
	interval int64 // ns of budget one frame costs: 1s / rate
	burst    int64 // ns of backlog allowed: burst * interval
	tat      int64 // GCRA theoretical arrival time, ns since start
	start    time.Time
	written  *atomic.Uint64 // the connection's bytes written so far
	pings    int64          // PINGs (not acks) received
	lastPing int64          // other() at the previous PING
	topWU    int64          // highest other() seen at a stream-0 WINDOW_UPDATE
}

const (
	scanPreface = iota
	scanFrames
	scanOff
	frameHeaderLen = 9
	clientPreface  = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

// HTTP/2 frame types and flags (RFC 9113).
const (
	frameData         = 0x0
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
	flagAck           = 0x1
	flagEndStream     = 0x1
)

// errControlFlood is the read error of a connection over its frame budget.
var errControlFlood = errors.New("protocol.grpc: HTTP/2 control frames over control_frame_rate; connection closed")

// init sets the scanner up for rate frames per second (and a burst of as
// many); written counts the connection's bytes written.
func (sc *frameScanner) init(rate int, now time.Time, written *atomic.Uint64) {
	if rate <= 0 {
		sc.state = scanOff
		return
	}
	sc.interval = int64(time.Second) / int64(rate)
	sc.burst = sc.interval * int64(rate)
	sc.start = now
	sc.written = written
}

// pingAckLen is the size of a PING ack: a frame header and 8 bytes.
const pingAckLen = frameHeaderLen + 8

// other returns the bytes written that are not acks of the PINGs received
// so far (less while some acks are not yet written).
func (sc *frameScanner) other() int64 {
	return int64(sc.written.Load()) - pingAckLen*sc.pings
}

// scan looks at the next bytes read from the connection; it reports false
// once the connection is over its budget. It does not allocate.
func (sc *frameScanner) scan(p []byte, now time.Time) bool {
	for len(p) > 0 {
		switch sc.state {
		case scanOff:
			return true
		case scanPreface:
			for len(p) > 0 && sc.matched < len(clientPreface) {
				if p[0] != clientPreface[sc.matched] {
					sc.state = scanOff // not HTTP/2: HTTP/1.x, nothing to scan
					return true
				}
				sc.matched++
				p = p[1:]
			}
			if sc.matched == len(clientPreface) {
				sc.state = scanFrames
			}
			continue
		}
		if sc.skip > 0 {
			k := min(sc.skip, len(p))
			sc.skip -= k
			p = p[k:]
			continue
		}
		var h []byte
		if sc.hn == 0 && len(p) >= frameHeaderLen {
			h, p = p[:frameHeaderLen], p[frameHeaderLen:]
		} else {
			k := copy(sc.hdr[sc.hn:], p)
			sc.hn += k
			p = p[k:]
			if sc.hn < frameHeaderLen {
				return true
			}
			sc.hn = 0
			h = sc.hdr[:]
		}
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		typ, flags := h[3], h[4]
		stream := (uint32(h[5])<<24 | uint32(h[6])<<16 | uint32(h[7])<<8 | uint32(h[8])) & 0x7fffffff
		sc.skip = length
		if sc.free(length, typ, flags, stream) {
			continue
		}
		if !sc.charge(now) {
			return false
		}
	}
	return true
}

// free reports whether a frame does work enough not to be charged.
func (sc *frameScanner) free(length int, typ, flags byte, stream uint32) bool {
	switch typ {
	case frameSettings:
		return flags&flagAck != 0
	case framePing:
		if flags&flagAck != 0 {
			return true
		}
		sc.pings++
		o := sc.other()
		last := sc.lastPing
		sc.lastPing = o
		return o > last
	case frameRSTStream, framePriority:
		return false
	case frameWindowUpdate:
		if stream != 0 {
			return true
		}
		if o := sc.other(); o > sc.topWU {
			sc.topWU = o
			return true
		}
		return false
	case frameData:
		return length > 0 || flags&flagEndStream != 0
	}
	return typ <= frameContinuation // HEADERS, PUSH_PROMISE, GOAWAY, CONTINUATION
}

// charge takes one frame from the budget (GCRA): false when over it.
func (sc *frameScanner) charge(now time.Time) bool {
	t := int64(now.Sub(sc.start))
	tat := max(sc.tat, t) + sc.interval
	if tat-t > sc.burst {
		return false
	}
	sc.tat = tat
	return true
}
