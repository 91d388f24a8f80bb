package grpc

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// detailsKey is the trailer that carries a google.rpc.Status. A handler
// that wants to send status details sets it with kernel.SetTrailer to a
// marshalled google.rpc.Status whose code and message match its error;
// otherwise one with the code and message is sent.
const detailsKey = "grpc-status-details-bin"

// stream is one gRPC or gRPC-Web call, as the handler's kernel.ServerStream.
// The request body is read by RecvMsg (one receiver); everything written to
// the response goes through mu, so a sender goroutine that outlives the
// handler finds the call ended instead of touching the ResponseWriter.
type stream struct {
	h    *handler
	w    http.ResponseWriter
	ct   contentType
	body io.Reader
	ctx  context.Context
	call kernel.ServerCall
	// live is the connection's entry in the live view; begun is set once
	// the call was counted by its ConnStats.Begin.
	live  *liveConn
	begun bool

	codec             kernel.Codec
	reqGzip, respGzip bool

	recvBuf, unzipBuf []byte // receiver's
	recvd             bool   // the one message of a unary or server-streaming call was read

	// The request deadline (deadline.go): rt is the timer of a unary or
	// server-streaming call until its request arrived; h1Progress is set
	// for an HTTP/1.x client- or bidi-streaming call, whose body reads
	// each have a deadline. writeDeadline is set for an HTTP/1.x call on a
	// connection that is not a trackedConn (TLS), whose flushes get one.
	rt            *reqTimer
	reqMu         sync.Mutex
	reqState      uint8
	wait          kernel.Wait // the call's charge while its request arrives
	h1Progress    bool
	writeDeadline bool

	mu          sync.Mutex
	wroteHeader bool
	ended       bool
	sendBuf     []byte
	zipBuf      []byte
}

var _ kernel.ServerStream = (*stream)(nil)

// Context implements kernel.ServerStream.
func (s *stream) Context() context.Context { return s.ctx }

// SendHeader implements kernel.ServerStream.
func (s *stream) SendHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return s.endedErr()
	}
	if s.wroteHeader {
		return errors.New("protocol.grpc: header metadata already sent")
	}
	if len(md) > 0 {
		if err := kernel.SetHeader(s.ctx, md); err != nil {
			return err
		}
	}
	s.writeHeader()
	return s.flush()
}

// started reports whether the response has begun.
func (s *stream) started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wroteHeader
}

// writeHeader sends the response header: content type, encodings, and the
// header metadata. Called with mu held.
func (s *stream) writeHeader() {
	h := s.w.Header()
	s.putHeader(h)
	s.w.WriteHeader(http.StatusOK)
	s.wroteHeader = true
}

func (s *stream) putHeader(h http.Header) {
	h.Set("Content-Type", s.ct.header)
	h["Date"] = nil // a nil value tells net/http not to add one
	if s.respGzip {
		h.Set("Grpc-Encoding", "gzip")
	}
	h.Set("Grpc-Accept-Encoding", "gzip")
	putMD(h, s.call.Header, http.CanonicalHeaderKey)
}

func (s *stream) flush() error {
	rc := http.NewResponseController(s.w)
	if s.writeDeadline {
		rc.SetWriteDeadline(time.Now().Add(s.h.writeTimeout))
	}
	if err := rc.Flush(); err != nil {
		return s.writeErr(err)
	}
	return nil
}

// endedErr is what sending returns once the call has ended.
func (s *stream) endedErr() error {
	if err := s.ctx.Err(); err != nil {
		return status.FromError(err)
	}
	return status.New(status.Internal, "protocol.grpc: the call has ended")
}

func (s *stream) writeErr(err error) error {
	if cerr := s.ctx.Err(); cerr != nil {
		return status.FromError(cerr)
	}
	return status.Errorf(status.Unavailable, "protocol.grpc: write response: %v", err)
}

// SendMsg implements kernel.ServerStream.
func (s *stream) SendMsg(m any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return s.endedErr()
	}
	if err := s.ctx.Err(); err != nil {
		return status.FromError(err)
	}
	b := append(s.sendBuf[:0], 0, 0, 0, 0, 0)
	b, err := s.codec.Marshal(b, m)
	if err != nil {
		return status.Errorf(status.Internal, "encode response of %s: %v", s.call.Method.FullName, err)
	}
	s.sendBuf = b
	if s.respGzip {
		z, err := gzipAppend(append(s.zipBuf[:0], 0, 0, 0, 0, 0), b[prefixLen:])
		if err != nil {
			return status.Errorf(status.Internal, "compress response of %s: %v", s.call.Method.FullName, err)
		}
		s.zipBuf, b = z, z
		b[0] = flagCompressed
	}
	binary.BigEndian.PutUint32(b[1:prefixLen], uint32(len(b)-prefixLen))
	if !s.wroteHeader {
		s.writeHeader()
	}
	if err := s.write(b); err != nil {
		return err
	}
	if !s.call.Method.ServerStreams {
		// The one response goes out with the trailers when the handler
		// returns: one write instead of two.
		return nil
	}
	return s.flush()
}

// write writes body bytes, base64-encoded for grpc-web-text (each write is
// padded on its own, which text clients decode chunk by chunk).
func (s *stream) write(b []byte) error {
	if s.ct.text {
		b = base64.StdEncoding.AppendEncode(nil, b)
	}
	if _, err := s.w.Write(b); err != nil {
		return s.writeErr(err)
	}
	return nil
}

// RecvMsg implements kernel.ServerStream. A message above max_message fails
// with RESOURCE_EXHAUSTED before anything is allocated for it; so does one
// whose decompressed size exceeds it. For a method that takes one request
// message (unary, server streaming), the first RecvMsg also reads the end
// of the request and fails with UNIMPLEMENTED when there is no message or
// more than one, as gRPC's status code guide says; later calls return
// io.EOF.
func (s *stream) RecvMsg(m any) error {
	if s.call.Method.ClientStreams {
		return s.recv(m)
	}
	if s.recvd {
		return io.EOF
	}
	s.recvd = true
	switch err := s.recv(m); err {
	case nil:
	case io.EOF:
		return status.Errorf(status.Unimplemented, "%s takes one request message; the client sent none", s.call.Method.FullName)
	default:
		return err
	}
	var one [1]byte
	switch _, err := io.ReadFull(s.body, one[:]); err {
	case io.EOF:
		if !s.requestDone() {
			return s.expiredErr()
		}
		return nil
	case nil:
		return status.Errorf(status.Unimplemented, "%s takes one request message; the client sent more", s.call.Method.FullName)
	default:
		return s.readErr(err)
	}
}

// recv reads and decodes the next request message. Its buffer is taken
// from the process-wide budget (kernel.Budget) for the message's claimed
// length before the message is read, and given back once it is decoded; a
// budget spent makes room by failing the calls that have waited longest for
// their request (kernel.Budget), and fails this call with
// RESOURCE_EXHAUSTED if that is not enough.
func (s *stream) recv(m any) error {
	var hdr [prefixLen]byte
	s.progress()
	if _, err := io.ReadFull(s.body, hdr[:]); err != nil {
		if err == io.EOF {
			return io.EOF
		}
		return s.readErr(err)
	}
	flags, n := hdr[0], binary.BigEndian.Uint32(hdr[1:])
	if flags&^flagCompressed != 0 {
		return status.Errorf(status.Internal, "request message has unknown flags %#x", flags)
	}
	if uint64(n) > uint64(s.h.maxMessage) {
		return status.Errorf(status.ResourceExhausted, "request message of %d bytes exceeds the limit of %d bytes", n, s.h.maxMessage)
	}
	s.h.budget.Leave(&s.wait) // the request is arriving: its message is charged instead
	if !s.h.budget.Acquire(int64(n)) {
		return status.Errorf(status.ResourceExhausted, "request message of %d bytes: the server's buffers are full (max_buffered)", n)
	}
	defer s.h.budget.Release(int64(n))
	if cap(s.recvBuf) < int(n) {
		s.recvBuf = make([]byte, n)
	}
	msg := s.recvBuf[:n]
	if n > 0 {
		s.progress()
	}
	if _, err := io.ReadFull(s.body, msg); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the body ended after the prefix
		}
		return s.readErr(err)
	}
	if flags&flagCompressed != 0 {
		if !s.reqGzip {
			return status.New(status.Internal, "request message is compressed, but the call names no grpc-encoding")
		}
		var err error
		s.unzipBuf, err = gunzip(s.unzipBuf, msg, s.h.maxMessage)
		if err != nil {
			return err
		}
		msg = s.unzipBuf
	}
	if err := s.codec.Unmarshal(msg, m); err != nil {
		// A codec's own status is the call's; anything else is INTERNAL.
		var se *status.Error
		if !errors.As(err, &se) {
			se = status.Errorf(status.Internal, "decode request of %s: %v", s.call.Method.FullName, err)
		}
		return se
	}
	return nil
}

func (s *stream) readErr(err error) error {
	if !s.requestDone() {
		return s.expiredErr()
	}
	if s.h1Progress && errors.Is(err, os.ErrDeadlineExceeded) {
		// Before the context: net/http cancels it on the read's failure.
		return status.Errorf(status.DeadlineExceeded, "protocol.grpc: the request body made no progress for request_timeout (%v)", s.h.requestTimeout)
	}
	if errors.Is(err, errBadText) {
		return status.NewError(status.Internal, err)
	}
	if cerr := s.ctx.Err(); cerr != nil {
		return status.FromError(cerr)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return status.New(status.Internal, "request body ends inside a message")
	}
	return status.Errorf(status.Canceled, "protocol.grpc: read request: %v", err)
}

// finish ends the call with err's status: in trailers after the messages,
// or, when nothing was sent yet, as a trailers-only response (the status in
// the HTTP headers). gRPC-Web trailers are a last body frame with flag 0x80.
func (s *stream) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	code, msg := status.OK, ""
	if se := status.FromError(err); se != nil {
		code, msg = se.Code(), se.Message()
	}
	if s.live != nil {
		// Before the status is written: once a client has it, the call
		// is no longer in flight.
		if s.begun {
			s.live.stats.End(code)
		} else {
			s.live.stats.Finish(code)
		}
	}
	trailer := s.call.Trailer
	var details string
	if code != status.OK {
		if d := trailer[detailsKey]; len(d) > 0 {
			details = d[0]
		} else {
			details = string(statusProto(code, msg))
		}
	}
	put := func(h http.Header, name func(string) string) {
		h[name("grpc-status")] = []string{strconv.Itoa(int(code))}
		if msg != "" {
			h[name("grpc-message")] = []string{percentEncode(msg)}
		}
		if details != "" {
			h[name(detailsKey)] = []string{encodeBin(details)}
		}
		putMD(h, trailer, name)
	}
	if !s.wroteHeader && hasMD(s.call.Header) {
		// Header metadata the handler set goes in a header block of its
		// own, as for a call that answered: a trailers-only response would
		// deliver it as trailer metadata.
		s.writeHeader()
	}
	if !s.wroteHeader {
		h := s.w.Header()
		s.putHeader(h)
		put(h, http.CanonicalHeaderKey)
		s.w.WriteHeader(http.StatusOK)
		s.wroteHeader = true
		return
	}
	if s.ct.web {
		t := make(http.Header)
		put(t, func(k string) string { return k })
		var block strings.Builder
		for k, vs := range t {
			for _, v := range vs {
				block.WriteString(k)
				block.WriteString(": ")
				block.WriteString(v)
				block.WriteString("\r\n")
			}
		}
		frame := make([]byte, prefixLen, prefixLen+block.Len())
		frame[0] = flagTrailers
		binary.BigEndian.PutUint32(frame[1:], uint32(block.Len()))
		frame = append(frame, block.String()...)
		if s.write(frame) == nil {
			s.flush()
		}
		return
	}
	put(s.w.Header(), func(k string) string { return http.TrailerPrefix + k })
}

// hasMD reports whether md holds a key that putMD would send.
func hasMD(md metadata.MD) bool {
	for k := range md {
		if validKey(k) && !reservedResponse(k) {
			return true
		}
	}
	return false
}
