package grpc

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// handler serves gRPC and gRPC-Web calls over HTTP, dispatching them to d.
// Errors found before the handler runs (unknown method, codec, encoding,
// malformed metadata or timeout, schema mismatch) are answered as
// trailers-only responses, so no interceptor runs for them. Requests that
// are not gRPC at all get plain HTTP errors: 405 for a method other than
// POST, 415 for another content type, 505 for gRPC over HTTP/1.x, 403 for a
// cross-origin request that the CORS policy does not allow.
type handler struct {
	d           *kernel.Dispatcher
	cors        CORSConfig
	maxMessage  int
	maxMetadata int
	// hijackClosed is told when closeAfter has closed a connection it took
	// over from the HTTP server (ServeConn's accounting of TLS connections).
	hijackClosed func(net.Conn)
	// requestTimeout bounds the arrival of a call's request (deadline.go);
	// writeTimeout each write of an HTTP/1.x response over TLS; budget is
	// the process-wide budget of buffered request bytes.
	requestTimeout time.Duration
	writeTimeout   time.Duration
	budget         *kernel.Budget
}

// contentType is a parsed gRPC or gRPC-Web content type.
type contentType struct {
	web, text bool   // gRPC-Web; base64 text body
	base      string // "application/grpc", "application/grpc-web"...
	codec     string // content subtype: "proto" when absent
	header    string // what the response carries
}

// parseContentType parses application/grpc[+codec],
// application/grpc-web[+codec] and application/grpc-web-text[+codec];
// parameters are ignored.
func parseContentType(v string) (contentType, bool) {
	v, _, _ = strings.Cut(v, ";")
	v = strings.ToLower(strings.TrimSpace(v))
	base, sub, plus := strings.Cut(v, "+")
	ct := contentType{base: base, codec: sub, header: v}
	switch base {
	case "application/grpc":
	case "application/grpc-web":
		ct.web = true
	case "application/grpc-web-text":
		ct.web, ct.text = true, true
	default:
		return ct, false
	}
	if plus && sub == "" {
		return ct, false
	}
	if sub == "" {
		ct.codec = "proto"
	}
	return ct, true
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && !sameOrigin(origin, r) {
		if !h.cors.allows(origin) {
			http.Error(w, "protocol.grpc: cross-origin requests from "+origin+" are not allowed", http.StatusForbidden)
			return
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.cors.preflight(w, r, origin)
			return
		}
		h.cors.annotate(w.Header(), origin)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "protocol.grpc: method "+r.Method+" is not allowed; gRPC calls are POST requests", http.StatusMethodNotAllowed)
		return
	}
	ct, ok := parseContentType(r.Header.Get("Content-Type"))
	if !ok {
		w.Header().Set("Accept-Post", "application/grpc, application/grpc-web, application/grpc-web-text")
		http.Error(w, "protocol.grpc: content type "+r.Header.Get("Content-Type")+" is not gRPC or gRPC-Web", http.StatusUnsupportedMediaType)
		return
	}
	if !ct.web && r.ProtoMajor < 2 {
		http.Error(w, "protocol.grpc: gRPC needs HTTP/2; over HTTP/1.1 use gRPC-Web", http.StatusHTTPVersionNotSupported)
		return
	}
	h.serveCall(w, r, ct)
}

// serveCall runs one gRPC or gRPC-Web call.
func (h *handler) serveCall(w http.ResponseWriter, r *http.Request, ct contentType) {
	s := &stream{h: h, w: w, ct: ct, body: r.Body}
	s.call.Protocol = "grpc"
	if ct.web {
		s.call.Protocol = "grpc-web"
	}
	if ct.text {
		s.body = &base64Reader{r: r.Body}
	}
	if lc := connOf(r); lc != nil {
		s.call.Peer, s.live = lc.remote, lc
		lc.arrived(r.ProtoMajor >= 2, ct.web)
		if lc.aged.Load() {
			// Past max_connection_age: HTTP/2 sends GOAWAY and closes
			// once its calls are done; HTTP/1.1 closes after this call.
			w.Header().Set("Connection", "close")
		}
		if r.ProtoMajor < 2 && lc.uncounted && h.writeTimeout > 0 {
			// HTTP/1.1 over TLS: its writes do not pass through a
			// trackedConn, so each flush gets the write deadline.
			s.writeDeadline = true
			http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.writeTimeout))
		}
	}
	if r.TLS != nil {
		if s.live != nil {
			s.call.PeerIdentity = s.live.identity(r.TLS)
		} else {
			s.call.PeerIdentity = kernel.VerifiedIdentity(r.TLS)
		}
		s.call.TLS = h.d.TLS()
	}
	ctx := r.Context()
	route, md, timeout, err := h.prepare(r, s)
	if err != nil {
		s.ctx = ctx
		s.finish(err) // counted by ConnStats.Finish: never dispatched
		return
	}
	if timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, timeout)
		defer stop()
	}
	s.call.Method = route.Method
	ctx = metadata.NewIncomingContext(ctx, md)
	s.ctx = kernel.NewCallContext(ctx, &s.call)
	fullDuplex := r.ProtoMajor < 2 && route.Method.ClientStreams
	if fullDuplex {
		// gRPC-Web over HTTP/1.1 with several request messages: let the
		// handler read them after it has begun to answer. Methods that take
		// one message read the body to its end before answering (see
		// RecvMsg), so they need no full duplex.
		http.NewResponseController(w).EnableFullDuplex()
	}
	if h.requestTimeout > 0 {
		if !route.Method.ClientStreams {
			if !s.startRequestTimer(h.requestTimeout) {
				s.finish(errEvicted) // counted by ConnStats.Finish: never dispatched
				return
			}
		} else if r.ProtoMajor < 2 {
			s.h1Progress = true
		}
	}
	if s.live != nil {
		s.live.stats.Begin()
		s.begun = true
	}
	err = h.d.HandleStream(route, s)
	s.requestDone()
	if err == nil && s.ctx.Err() != nil {
		// The deadline passed or the client went away: the result is moot.
		err = s.ctx.Err()
	}
	if !fullDuplex {
		s.finish(err)
		return
	}
	// The request body must reach its end before the connection carries
	// the next request: net/http would otherwise finish it in the
	// background while it reads the next request (golang/go#68560).
	if !s.started() {
		if !h.drain(r) {
			w.Header().Set("Connection", "close")
		}
		s.finish(err)
		return
	}
	s.finish(err)
	if !h.drain(r) {
		h.closeAfter(w)
	}
}

// drain reads what is left of a request body; it reports false when more
// than drainLimit bytes (or max_message, if larger) are left, or the body
// fails.
func (h *handler) drain(r *http.Request) bool {
	limit := max(int64(h.maxMessage)+prefixLen, drainLimit)
	n, err := io.CopyN(io.Discard, r.Body, limit+1)
	return err == io.EOF && n <= limit
}

// drainLimit is the least drain reads: net/http's own bound on discarding
// an unread body.
const drainLimit = 256 << 10

// closeAfter ends a chunked HTTP/1.1 response whose request body could not
// be drained and closes its connection, so no other request is read from
// it.
func (h *handler) closeAfter(w http.ResponseWriter) {
	conn, bw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	bw.WriteString("0\r\n\r\n") // the last chunk, with no trailers
	bw.Flush()
	// Closing a socket with unread bytes resets it, and a reset can
	// destroy the response before the client reads it: half-close, discard
	// what the client still sends for a moment, then close.
	go func() {
		if cw, ok := conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			conn.SetReadDeadline(time.Now().Add(lingerFor))
			io.CopyN(io.Discard, conn, lingerMax)
		}
		conn.Close()
		if h.hijackClosed != nil {
			h.hijackClosed(conn)
		}
	}()
}

// lingerFor and lingerMax bound how long and how much closeAfter reads
// from a connection it has half-closed.
const (
	lingerFor = 500 * time.Millisecond
	lingerMax = 1 << 20
)

// prepare checks everything a call needs before its handler runs: the
// route, the codec and its schema, the message encoding, the timeout and
// the metadata. A zero timeout means none.
func (h *handler) prepare(r *http.Request, s *stream) (route *kernel.Route, md metadata.MD, timeout time.Duration, err error) {
	path := r.URL.Path
	if svc, m, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/"); !strings.HasPrefix(path, "/") || !ok || svc == "" || m == "" || strings.Contains(m, "/") {
		return nil, nil, 0, status.Errorf(status.Unimplemented, "malformed method name %q: want /package.Service/Method", path)
	}
	if route = h.d.Route(path); route == nil {
		return nil, nil, 0, kernel.UnknownMethod(path)
	}
	if s.codec, err = h.d.Codec(s.ct.codec); err != nil {
		return nil, nil, 0, err
	}
	switch enc := r.Header.Get("Grpc-Encoding"); enc {
	case "", "identity":
	case "gzip":
		// Answer in the encoding the client chose: it can decode it.
		s.reqGzip, s.respGzip = true, true
	default:
		return nil, nil, 0, status.Errorf(status.Unimplemented, "grpc-encoding %q is not supported (accepted: gzip, identity)", enc)
	}
	if t := r.Header.Get("Grpc-Timeout"); t != "" {
		if timeout, err = parseTimeout(t); err != nil {
			return nil, nil, 0, status.New(status.Internal, err.Error())
		}
		timeout = max(timeout, 1) // "0n" is a deadline already passed
	}
	md, size, err := incomingMD(r.Header)
	if err != nil {
		return nil, nil, 0, status.New(status.Internal, err.Error())
	}
	if size > h.maxMetadata {
		return nil, nil, 0, status.Errorf(status.ResourceExhausted, "request metadata of %d bytes exceeds the limit of %d bytes", size, h.maxMetadata)
	}
	if err := h.d.CheckSchema(route, s.codec, md.Get(kernel.SchemaKey)); err != nil {
		return nil, nil, 0, err
	}
	return route, md, timeout, nil
}

// sameOrigin reports whether origin is the origin of the server r reached.
func sameOrigin(origin string, r *http.Request) bool {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return strings.EqualFold(origin, scheme+r.Host)
}
