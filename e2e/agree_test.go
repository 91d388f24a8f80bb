package e2e_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcmd "google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	binarycodec "github.com/axonrpc/axon/plugins/codec-binary"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	grpcproto "github.com/axonrpc/axon/plugins/protocol-grpc"
	static "github.com/axonrpc/axon/plugins/registry-static"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// The agreement table (TestAgree): the native protocol, gRPC and gRPC-Web
// give the same results for the same calls to the same handlers.

type (
	aReq  = echopb.SayRequest
	aResp = echopb.SayResponse
)

const agreeSvc = "axon.test.v1.Agree"

const (
	aEcho   = "/" + agreeSvc + "/Echo"       // unary: returns the text; header h-protocol: the protocol that carried it
	aFail   = "/" + agreeSvc + "/Fail"       // unary: text "CODE MSG": trailer t-code: CODE, then that status
	aFailH  = "/" + agreeSvc + "/FailHeader" // unary: as Fail, and header h-code: CODE
	aPanic  = "/" + agreeSvc + "/Panic"      // unary: panics
	aResv   = "/" + agreeSvc + "/Reserved"   // unary: header h-ok and grpc-agree-h, trailer t-ok and grpc-agree-t
	aMeta   = "/" + agreeSvc + "/Meta"       // unary: returns the x-agree* and grpc-agree* metadata it saw; echoes it as header h-KEY and trailer t-KEY
	aBlock  = "/" + agreeSvc + "/Block"      // unary: text TOKEN: blocks until its context is done, reports it
	aCount  = "/" + agreeSvc + "/Count"      // server streaming: text "N" or "N CODE MSG": header h-count: N, N messages "0".."N-1", trailer t-end: done, then OK or that status
	aHang   = "/" + agreeSvc + "/Hang"       // server streaming: text TOKEN: one message "ready", then blocks until its context is done, reports it
	aConcat = "/" + agreeSvc + "/Concat"     // client streaming: the texts joined; a message "fail" ends the call INVALID_ARGUMENT
	aChat   = "/" + agreeSvc + "/Chat"       // bidi: each request echoed as "re: TEXT" until the client half-closes; "fail" ends the call OUT_OF_RANGE; "hold TOKEN" is echoed, then it blocks until its context is done, reports it
	aBig    = "/" + agreeSvc + "/Big"        // server streaming: text "N SIZE": N messages of SIZE bytes
	aTally  = "/" + agreeSvc + "/Tally"      // client streaming: "N messages, B bytes"
)

// agreeLimits are the server's limits: small, so that the limit rows need
// little data.
const agreeLimits = "{max_message: 4KiB, max_metadata: 1KiB}"

// handlerSaw is what a blocking handler saw of its context.
type handlerSaw struct {
	err         error
	hasDeadline bool
}

type agreeService struct {
	mu      sync.Mutex
	started map[string]chan struct{}
	saw     map[string]chan handlerSaw
}

// expect registers token before a call to Block or Hang: started is closed
// when the handler starts, saw receives what it saw.
func (s *agreeService) expect(token string) (started chan struct{}, saw chan handlerSaw) {
	s.mu.Lock()
	defer s.mu.Unlock()
	started, saw = make(chan struct{}), make(chan handlerSaw, 1)
	s.started[token], s.saw[token] = started, saw
	return started, saw
}

// block is the body of Block and Hang: it waits for ctx and reports it.
func (s *agreeService) block(ctx context.Context, token string) error {
	return s.blockAfter(ctx, token, nil)
}

// blockAfter is block, running first (if not nil) once the handler counts
// as started, so that a client that sees what first sends finds it started.
func (s *agreeService) blockAfter(ctx context.Context, token string, first func() error) error {
	s.mu.Lock()
	started, saw := s.started[token], s.saw[token]
	s.mu.Unlock()
	if started == nil {
		return status.Errorf(status.FailedPrecondition, "unexpected token %q", token)
	}
	close(started)
	if first != nil {
		// A failure ends the call; the context then says why.
		_ = first()
	}
	var r handlerSaw
	_, r.hasDeadline = ctx.Deadline()
	select {
	case <-ctx.Done():
		r.err = ctx.Err()
	case <-time.After(testTimeout):
		r.err = errors.New("the handler's context was never done")
	}
	saw <- r
	return r.err
}

// fail is the body of Fail and FailHeader: text "CODE MSG" becomes that
// status, with trailer t-code: CODE and, withHeader, header h-code: CODE.
func fail(ctx context.Context, text string, withHeader bool) error {
	c, msg, _ := strings.Cut(text, " ")
	n, err := strconv.Atoi(c)
	if err != nil {
		return status.Errorf(status.InvalidArgument, "bad code %q", c)
	}
	if withHeader {
		if err := kernel.SetHeader(ctx, metadata.New("h-code", c)); err != nil {
			return err
		}
	}
	if err := kernel.SetTrailer(ctx, metadata.New("t-code", c)); err != nil {
		return err
	}
	return status.New(status.Code(n), msg)
}

func (s *agreeService) desc() *kernel.ServiceDesc {
	return kernel.NewService(agreeSvc,
		kernel.Unary("Echo", func(ctx context.Context, r *aReq) (*aResp, error) {
			if err := kernel.SetHeader(ctx, metadata.New("h-protocol", kernel.CallFromContext(ctx).Protocol)); err != nil {
				return nil, err
			}
			return &aResp{Text: r.GetText()}, nil
		}),
		kernel.Unary("Fail", func(ctx context.Context, r *aReq) (*aResp, error) {
			return nil, fail(ctx, r.GetText(), false)
		}),
		kernel.Unary("FailHeader", func(ctx context.Context, r *aReq) (*aResp, error) {
			return nil, fail(ctx, r.GetText(), true)
		}),
		kernel.Unary("Reserved", func(ctx context.Context, _ *aReq) (*aResp, error) {
			if err := kernel.SetHeader(ctx, metadata.New("h-ok", "1", "grpc-agree-h", "1")); err != nil {
				return nil, err
			}
			if err := kernel.SetTrailer(ctx, metadata.New("t-ok", "1", "grpc-agree-t", "1")); err != nil {
				return nil, err
			}
			return &aResp{Text: "ok"}, nil
		}),
		kernel.Unary("Panic", func(context.Context, *aReq) (*aResp, error) {
			panic("agree: handler panics on purpose")
		}),
		kernel.Unary("Meta", func(ctx context.Context, r *aReq) (*aResp, error) {
			in := metadata.FromIncomingContext(ctx)
			h, tr := metadata.MD{}, metadata.MD{}
			seen := metadata.MD{}
			for k, vs := range in {
				if strings.HasPrefix(k, "x-agree") || strings.HasPrefix(k, "grpc-agree") {
					h.Append("h-"+k, vs...)
					tr.Append("t-"+k, vs...)
					seen.Append(k, vs...)
				}
			}
			if err := kernel.SetHeader(ctx, h); err != nil {
				return nil, err
			}
			if err := kernel.SetTrailer(ctx, tr); err != nil {
				return nil, err
			}
			return &aResp{Text: renderMD(seen, "")}, nil
		}),
		kernel.Unary("Block", func(ctx context.Context, r *aReq) (*aResp, error) {
			return nil, s.block(ctx, r.GetText())
		}),
		kernel.ServerStreaming("Count", func(r *aReq, st kernel.ServerStreamingServer[aResp]) error {
			f := strings.SplitN(r.GetText(), " ", 3)
			n, err := strconv.Atoi(f[0])
			if err != nil {
				return status.Errorf(status.InvalidArgument, "bad count %q", f[0])
			}
			if err := st.SendHeader(metadata.New("h-count", f[0])); err != nil {
				return err
			}
			if err := kernel.SetTrailer(st.Context(), metadata.New("t-end", "done")); err != nil {
				return err
			}
			for i := range n {
				if err := st.Send(&aResp{Text: strconv.Itoa(i)}); err != nil {
					return err
				}
			}
			if len(f) == 3 {
				c, err := strconv.Atoi(f[1])
				if err != nil {
					return status.Errorf(status.InvalidArgument, "bad code %q", f[1])
				}
				return status.New(status.Code(c), f[2])
			}
			return nil
		}),
		kernel.ServerStreaming("Hang", func(r *aReq, st kernel.ServerStreamingServer[aResp]) error {
			return s.blockAfter(st.Context(), r.GetText(), func() error { return st.Send(&aResp{Text: "ready"}) })
		}),
		kernel.ClientStreaming("Concat", func(st kernel.ClientStreamingServer[aReq, aResp]) error {
			var b strings.Builder
			for i := 0; ; i++ {
				m, err := st.Recv()
				if err == io.EOF {
					return st.SendAndClose(&aResp{Text: b.String()})
				}
				if err != nil {
					return err
				}
				if m.GetText() == "fail" {
					return status.Errorf(status.InvalidArgument, "message %d says fail", i)
				}
				b.WriteString(m.GetText())
			}
		}),
		kernel.BidiStreaming("Chat", func(st kernel.BidiStreamingServer[aReq, aResp]) error {
			for {
				m, err := st.Recv()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				if m.GetText() == "fail" {
					return status.New(status.OutOfRange, "chat says fail")
				}
				reply := func() error { return st.Send(&aResp{Text: "re: " + m.GetText()}) }
				if token, ok := strings.CutPrefix(m.GetText(), "hold "); ok {
					return s.blockAfter(st.Context(), token, reply)
				}
				if err := reply(); err != nil {
					return err
				}
			}
		}),
		kernel.ServerStreaming("Big", func(r *aReq, st kernel.ServerStreamingServer[aResp]) error {
			var n, size int
			if _, err := fmt.Sscan(r.GetText(), &n, &size); err != nil {
				return status.Errorf(status.InvalidArgument, "bad request %q", r.GetText())
			}
			m := &aResp{Text: strings.Repeat("b", size)}
			for range n {
				if err := st.Send(m); err != nil {
					return err
				}
			}
			return nil
		}),
		kernel.ClientStreaming("Tally", func(st kernel.ClientStreamingServer[aReq, aResp]) error {
			var n, size int
			for {
				m, err := st.Recv()
				if err == io.EOF {
					return st.SendAndClose(&aResp{Text: fmt.Sprintf("%d messages, %d bytes", n, size)})
				}
				if err != nil {
					return err
				}
				n, size = n+1, size+len(m.GetText())
			}
		}),
	)
}

// startAgreeServer runs the Agree service on a Runtime configured from
// YAML, as `axon serve` is, and returns its host:port.
func startAgreeServer(t *testing.T, svc *agreeService) string {
	t.Helper()
	cat, err := kernel.NewCatalog([]kernel.Factory{
		tcp.Factory, native.Factory, grpcproto.Factory, grpcproto.WebFactory,
		protocodec.Factory, binarycodec.Factory, static.Factory,
	})
	if err != nil {
		t.Fatal(err)
	}
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc.desc()})
	if err != nil {
		t.Fatal(err)
	}
	yaml := `service: agree
tls: {mode: "off"}
registry: {use: static}
listen:
  - transport: tcp
    address: "127.0.0.1:0"
    protocols: [axon, grpc, grpc-web]
server:
  codecs: [proto, binary]
  limits: ` + agreeLimits + "\n"
	rt := kernel.NewRuntime(cat, table, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := rt.Apply(ctx, parseConfig(t, yaml)); err != nil {
		t.Fatalf("apply: %v\n%s", err, yaml)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := rt.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return hostPort(rt.Endpoints()[0].Address)
}

// shape is a streaming call's shape.
type shape int

const (
	serverStreams shape = iota + 1
	clientStreams
	bidiStreams
)

// agreeConn is one client, reduced to what the rows need. Metadata is
// given as key/value pairs; -bin values are raw bytes, each adapter
// encodes them as its client expects.
type agreeConn interface {
	unary(ctx context.Context, method string, md []string, text string) (out string, header, trailer map[string][]string, err error)
	stream(ctx context.Context, method string, sh shape, md []string) (agreeStream, error)
	// status gives the code and message of an error the client returned.
	status(err error) (status.Code, string)
}

// agreeStream is a streaming call. recv returns io.EOF at the end of a
// successful call; header and trailer are complete once recv has returned
// an error.
type agreeStream interface {
	send(text string) error
	closeSend() error
	recv() (string, error)
	header() map[string][]string
	trailer() map[string][]string
}

// agreeClient is a column of the table.
type agreeClient struct {
	name     string // e.g. "grpc-web/http1"
	protocol string // the protocol the server sees: kernel.ServerCall.Protocol
	conn     agreeConn
}

// ---- Axon's own client over the native protocol.

type nativeConn struct{ c *kernel.Client }

func newNativeConn(t *testing.T, addr string, codec kernel.Codec) nativeConn {
	c, err := kernel.NewClient(kernel.ClientOptions{
		Target:     "tcp://" + addr,
		Transports: map[string]kernel.Transport{"tcp": tcp.New(tcp.DefaultConfig())},
		Protocol:   native.New(native.DefaultConfig()),
		Codec:      codec,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return nativeConn{c}
}

func (n nativeConn) unary(ctx context.Context, method string, md []string, text string) (string, map[string][]string, map[string][]string, error) {
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	var h, tr metadata.MD
	var out aResp
	err := n.c.Invoke(ctx, method, &aReq{Text: text}, &out, kernel.Header(&h), kernel.Trailer(&tr))
	return out.GetText(), h, tr, err
}

func (n nativeConn) stream(ctx context.Context, method string, _ shape, md []string) (agreeStream, error) {
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	s, err := n.c.NewStream(ctx, method, kernel.StreamTypes[aReq, aResp]())
	if err != nil {
		return nil, err
	}
	return &nativeStream{s: s}, nil
}

func (nativeConn) status(err error) (status.Code, string) {
	s := status.FromError(err)
	return s.Code(), s.Message()
}

type nativeStream struct {
	s kernel.ClientStream
}

func (s *nativeStream) send(text string) error { return s.s.SendMsg(&aReq{Text: text}) }
func (s *nativeStream) closeSend() error       { return s.s.CloseSend() }
func (s *nativeStream) recv() (string, error) {
	var m aResp
	err := s.s.RecvMsg(&m)
	return m.GetText(), err
}
func (s *nativeStream) header() map[string][]string {
	h, _ := s.s.Header()
	return h
}
func (s *nativeStream) trailer() map[string][]string { return s.s.Trailer() }

// ---- grpc-go over gRPC (h2c).

type grpcConn struct{ cc *grpc.ClientConn }

func newGRPCConn(t *testing.T, addr string) grpcConn {
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return grpcConn{cc}
}

func (g grpcConn) unary(ctx context.Context, method string, md []string, text string) (string, map[string][]string, map[string][]string, error) {
	if len(md) > 0 {
		ctx = grpcmd.AppendToOutgoingContext(ctx, md...)
	}
	var h, tr grpcmd.MD
	var out aResp
	err := g.cc.Invoke(ctx, method, &aReq{Text: text}, &out, grpc.Header(&h), grpc.Trailer(&tr))
	return out.GetText(), h, tr, err
}

func (g grpcConn) stream(ctx context.Context, method string, sh shape, md []string) (agreeStream, error) {
	if len(md) > 0 {
		ctx = grpcmd.AppendToOutgoingContext(ctx, md...)
	}
	desc := &grpc.StreamDesc{ServerStreams: sh != clientStreams, ClientStreams: sh != serverStreams}
	s, err := g.cc.NewStream(ctx, desc, method)
	if err != nil {
		return nil, err
	}
	return grpcStream{s}, nil
}

func (grpcConn) status(err error) (status.Code, string) {
	s := grpcstatus.Convert(err)
	return status.Code(s.Code()), s.Message()
}

type grpcStream struct{ s grpc.ClientStream }

func (s grpcStream) send(text string) error { return s.s.SendMsg(&aReq{Text: text}) }
func (s grpcStream) closeSend() error       { return s.s.CloseSend() }
func (s grpcStream) recv() (string, error) {
	var m aResp
	err := s.s.RecvMsg(&m)
	return m.GetText(), err
}
func (s grpcStream) header() map[string][]string {
	h, _ := s.s.Header()
	return h
}
func (s grpcStream) trailer() map[string][]string { return s.s.Trailer() }

// ---- connect-go over gRPC-Web.

type webConn struct {
	hc   *http.Client
	base string
}

func newWebConn(t *testing.T, addr string, h2c bool) webConn {
	var p http.Protocols
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return webConn{hc: &http.Client{Transport: tr}, base: "http://" + addr}
}

func (w webConn) client(method string) *connect.Client[aReq, aResp] {
	return connect.NewClient[aReq, aResp](w.hc, w.base+method, connect.WithGRPCWeb())
}

// setHeaders puts metadata into HTTP headers: connect-go leaves the base64
// of -bin values to its caller (connect.EncodeBinaryHeader).
func setHeaders(h http.Header, md []string) {
	for i := 0; i+1 < len(md); i += 2 {
		v := md[i+1]
		if strings.HasSuffix(md[i], "-bin") {
			v = connect.EncodeBinaryHeader([]byte(v))
		}
		h.Add(md[i], v)
	}
}

// fromHeaders turns HTTP headers into metadata: lower-case keys, -bin
// values decoded (connect.DecodeBinaryHeader).
func fromHeaders(h http.Header) map[string][]string {
	md := map[string][]string{}
	for k, vs := range h {
		k = strings.ToLower(k)
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				for _, part := range strings.Split(v, ",") {
					b, err := connect.DecodeBinaryHeader(strings.TrimSpace(part))
					if err != nil {
						md[k] = append(md[k], "undecodable "+part)
						continue
					}
					md[k] = append(md[k], string(b))
				}
				continue
			}
			md[k] = append(md[k], v)
		}
	}
	return md
}

func (w webConn) unary(ctx context.Context, method string, md []string, text string) (string, map[string][]string, map[string][]string, error) {
	r := connect.NewRequest(&aReq{Text: text})
	setHeaders(r.Header(), md)
	res, err := w.client(method).CallUnary(ctx, r)
	if err != nil {
		// connect-go gives the metadata of a failed call, header and
		// trailer together, as the error's Meta.
		var ce *connect.Error
		if errors.As(err, &ce) {
			m := fromHeaders(ce.Meta())
			return "", m, m, err
		}
		return "", nil, nil, err
	}
	return res.Msg.GetText(), fromHeaders(res.Header()), fromHeaders(res.Trailer()), nil
}

func (w webConn) stream(ctx context.Context, method string, sh shape, md []string) (agreeStream, error) {
	c := w.client(method)
	switch sh {
	case serverStreams:
		return &webServerStream{ctx: ctx, c: c, md: md}, nil
	case clientStreams:
		s := c.CallClientStream(ctx)
		setHeaders(s.RequestHeader(), md)
		return &webClientStream{s: s}, nil
	default:
		s := c.CallBidiStream(ctx)
		setHeaders(s.RequestHeader(), md)
		return &webBidiStream{s: s}, nil
	}
}

func (webConn) status(err error) (status.Code, string) {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return status.Code(ce.Code()), ce.Message()
	}
	return status.Code(connect.CodeOf(err)), err.Error()
}

// webServerStream: connect-go takes a server stream's request up front, so
// send keeps it and closeSend makes the call.
type webServerStream struct {
	ctx context.Context
	c   *connect.Client[aReq, aResp]
	md  []string
	msg *aReq
	s   *connect.ServerStreamForClient[aResp]
	err error
}

func (s *webServerStream) send(text string) error {
	s.msg = &aReq{Text: text}
	return nil
}

func (s *webServerStream) closeSend() error {
	r := connect.NewRequest(s.msg)
	setHeaders(r.Header(), s.md)
	s.s, s.err = s.c.CallServerStream(s.ctx, r)
	return nil
}

func (s *webServerStream) recv() (string, error) {
	if s.err != nil {
		return "", s.err
	}
	if s.s.Receive() {
		return s.s.Msg().GetText(), nil
	}
	if err := s.s.Err(); err != nil {
		return "", err
	}
	return "", io.EOF
}

func (s *webServerStream) header() map[string][]string {
	if s.s == nil {
		return nil
	}
	return fromHeaders(s.s.ResponseHeader())
}

func (s *webServerStream) trailer() map[string][]string {
	if s.s == nil {
		return nil
	}
	return fromHeaders(s.s.ResponseTrailer())
}

// webClientStream: CloseAndReceive half-closes and waits for the response.
type webClientStream struct {
	s    *connect.ClientStreamForClient[aReq, aResp]
	res  *connect.Response[aResp]
	err  error
	done bool
}

func (s *webClientStream) send(text string) error {
	err := s.s.Send(&aReq{Text: text})
	if errors.Is(err, io.EOF) {
		return io.EOF // the call ended; its status comes from recv
	}
	return err
}

func (s *webClientStream) closeSend() error {
	s.res, s.err = s.s.CloseAndReceive()
	return nil
}

func (s *webClientStream) recv() (string, error) {
	if s.err != nil {
		return "", s.err
	}
	if s.done {
		return "", io.EOF
	}
	s.done = true
	return s.res.Msg.GetText(), nil
}

func (s *webClientStream) header() map[string][]string {
	if s.res == nil {
		return nil
	}
	return fromHeaders(s.res.Header())
}

func (s *webClientStream) trailer() map[string][]string {
	if s.res == nil {
		return nil
	}
	return fromHeaders(s.res.Trailer())
}

type webBidiStream struct {
	s *connect.BidiStreamForClient[aReq, aResp]
}

func (s *webBidiStream) send(text string) error {
	err := s.s.Send(&aReq{Text: text})
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	return err
}

func (s *webBidiStream) closeSend() error { return s.s.CloseRequest() }

func (s *webBidiStream) recv() (string, error) {
	m, err := s.s.Receive()
	if errors.Is(err, io.EOF) {
		s.s.CloseResponse()
		return "", io.EOF
	}
	if err != nil {
		s.s.CloseResponse()
		return "", err
	}
	return m.GetText(), nil
}

func (s *webBidiStream) header() map[string][]string  { return fromHeaders(s.s.ResponseHeader()) }
func (s *webBidiStream) trailer() map[string][]string { return fromHeaders(s.s.ResponseTrailer()) }

// ---- outcomes

// outcome is what a row observes of one call, client and server side.
type outcome struct {
	code    status.Code
	msg     string
	resps   []string // response texts, in order
	header  string   // response header metadata, the keys of respHeaderKeys, rendered
	trailer string   // trailer metadata, the keys of respTrailerKeys, rendered
	server  string   // what the handler saw, where the row asks
}

func (o outcome) String() string {
	s := fmt.Sprintf("%v %q resps=%q", o.code, o.msg, o.resps)
	if o.header != "" {
		s += " header{" + o.header + "}"
	}
	if o.trailer != "" {
		s += " trailer{" + o.trailer + "}"
	}
	if o.server != "" {
		s += " server{" + o.server + "}"
	}
	return s
}

// The response metadata an outcome shows: what the handlers set, and
// reserved keys that must not arrive. Other keys (content-type and the
// like) are each protocol's own.
var (
	respHeaderKeys  = []string{"h-", "grpc-agree"}
	respTrailerKeys = []string{"t-", "grpc-agree"}
)

// renderMD renders the keys of md with one of prefixes, sorted, with -bin
// values in hex.
func renderMD(md map[string][]string, prefixes ...string) string {
	var keys []string
	for k := range md {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				keys = append(keys, k)
				break
			}
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := md[k]
		if strings.HasSuffix(k, "-bin") {
			vs = append([]string(nil), vs...)
			for i, v := range vs {
				vs[i] = hex.EncodeToString([]byte(v))
			}
		}
		parts = append(parts, k+"="+strings.Join(vs, ","))
	}
	return strings.Join(parts, " ")
}

// end fills o's code and message from err, the error that ended the call.
func (c *agreeClient) end(o *outcome, err error) {
	if err == nil || err == io.EOF {
		o.code, o.msg = status.OK, ""
		return
	}
	o.code, o.msg = c.conn.status(err)
}

// callUnary makes a unary call and reports it.
func (c *agreeClient) callUnary(ctx context.Context, method string, md []string, text string) outcome {
	out, h, tr, err := c.conn.unary(ctx, method, md, text)
	var o outcome
	c.end(&o, err)
	if err == nil {
		o.resps = []string{out}
	}
	o.header, o.trailer = renderMD(h, respHeaderKeys...), renderMD(tr, respTrailerKeys...)
	return o
}

// callStream opens a stream, sends texts (one request for a server
// stream), half-closes and reads to the end. With pingPong, each response
// is read before the next request is sent.
func (c *agreeClient) callStream(ctx context.Context, method string, sh shape, md []string, pingPong bool, texts ...string) outcome {
	var o outcome
	s, err := c.conn.stream(ctx, method, sh, md)
	if err != nil {
		c.end(&o, err)
		return o
	}
	for _, text := range texts {
		if err := s.send(text); err == io.EOF {
			break // the call has ended: recv gives its status
		} else if err != nil {
			c.end(&o, err)
			return o
		}
		if pingPong {
			m, err := s.recv()
			if err != nil {
				c.end(&o, err)
				o.header, o.trailer = renderMD(s.header(), respHeaderKeys...), renderMD(s.trailer(), respTrailerKeys...)
				return o
			}
			o.resps = append(o.resps, m)
		}
	}
	if err := s.closeSend(); err != nil {
		c.end(&o, err)
		return o
	}
	for {
		m, err := s.recv()
		if err != nil {
			c.end(&o, err)
			break
		}
		o.resps = append(o.resps, m)
	}
	o.header, o.trailer = renderMD(s.header(), respHeaderKeys...), renderMD(s.trailer(), respTrailerKeys...)
	return o
}

// sawString renders what a blocking handler saw.
func sawString(r handlerSaw) string {
	switch {
	case errors.Is(r.err, context.Canceled):
		return "context canceled"
	case errors.Is(r.err, context.DeadlineExceeded):
		return "context deadline exceeded"
	}
	return fmt.Sprint(r.err)
}

// waitSaw waits for what the handler of token saw, or reports that it
// never ran.
func waitSaw(started chan struct{}, saw chan handlerSaw) handlerSaw {
	select {
	case <-started:
	default:
		return handlerSaw{err: errors.New("the handler never ran")}
	}
	select {
	case r := <-saw:
		return r
	case <-time.After(testTimeout):
		return handlerSaw{err: errors.New("the handler never ended")}
	}
}

// difference is a legitimate difference of one client (or all clients of
// one protocol) from a row's outcome.
type difference struct {
	want   outcome
	reason string
}

type agreeRow struct {
	name string
	want outcome
	run  func(t *testing.T, ctx context.Context, c *agreeClient, token string) outcome
	// differs maps a client name or a protocol to its expected outcome,
	// with the reason it legitimately differs.
	differs map[string]difference
	// notes maps a client name or a protocol to what the row cannot show
	// for it, logged with its result.
	notes map[string]string
	// skip maps a client name or a protocol to the reason the row cannot
	// run on it.
	skip map[string]string
	// bug maps a client name or a protocol to a bug: the row asserts the
	// correct behaviour, and is skipped for it with this explanation.
	bug map[string]string
}

const bigLen = 8 << 10 // twice max_message

// sizes matches the byte counts in limit messages: what a request's
// metadata weighs depends on what each client library adds to it
// (user-agent and the like), so the rows compare the rest.
var sizes = regexp.MustCompile(`of \d+ bytes exceeds`)

func normSizes(o outcome) outcome {
	o.msg = sizes.ReplaceAllString(o.msg, "of N bytes exceeds")
	return o
}

// noBidiOverHTTP1 is why bidi rows skip gRPC-Web over HTTP/1.1.
const noBidiOverHTTP1 = "connect-go refuses a bidi stream over HTTP/1.1 before sending anything " +
	"(UNIMPLEMENTED \"bidi streams require at least HTTP/2\"), as browsers cannot stream a request body: " +
	"over HTTP/1.1 a gRPC-Web client can only send all its requests in one body, which the half-duplex " +
	"row's shape is, but no real gRPC-Web client offers that for a bidi method"

func agreeRows(svc *agreeService) []agreeRow {
	binVal := string([]byte{0, 1, 0xfe, 0xff})
	meta := []string{
		"x-agree", "a", "x-agree", "b", "X-Agree-Upper", "u", "x-agree-empty", "", "x-agree-comma", "a,b",
		"x-agree-bin", binVal, "x-agree-bin", "\xff", "x-agree-comma-bin", "a,b",
	}
	const encMsg = "bad input: 100% wrong,\r\n naïve\tsoul \x00 ✓"
	tooBig := strings.Repeat("m", bigLen)
	rows := []agreeRow{
		{
			name: "unary OK, over the client's protocol and codec",
			want: outcome{resps: []string{"hi"}, header: "h-protocol=the client's"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				o := c.callUnary(ctx, aEcho, nil, "hi")
				if o.header == "h-protocol="+c.protocol {
					o.header = "h-protocol=the client's"
				}
				return o
			},
		},
		{
			name: "unary INVALID_ARGUMENT, a message with %, CR LF, tab, NUL and non-ASCII, and trailer metadata",
			want: outcome{code: status.InvalidArgument, msg: encMsg, trailer: "t-code=3"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aFail, nil, "3 "+encMsg)
			},
		},
		{
			name: "unary NOT_FOUND with an empty message",
			want: outcome{code: status.NotFound, trailer: "t-code=5"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aFail, nil, "5")
			},
		},
		{
			name: "unary INTERNAL from a handler panic",
			want: outcome{code: status.Internal, msg: "handler panic in " + aPanic},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aPanic, nil, "")
			},
		},
		{
			name: "unary error after the handler set header metadata: the header arrives as header",
			want: outcome{code: status.FailedPrecondition, msg: "refused", header: "h-code=9", trailer: "t-code=9"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aFailH, nil, "9 refused")
			},
			notes: map[string]string{
				"grpc-web": "connect-go reports the metadata of a failed call as one set (connect.Error.Meta), " +
					"so this client shows that both keys arrived, not which was header and which trailer",
			},
		},
		{
			name: "unknown method: UNIMPLEMENTED",
			want: outcome{code: status.Unimplemented, msg: "unknown method /" + agreeSvc + "/Nope"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, "/"+agreeSvc+"/Nope", nil, "hi")
			},
		},
		{
			name: "unknown service: UNIMPLEMENTED",
			want: outcome{code: status.Unimplemented, msg: "unknown method /axon.test.v1.Nope/Echo"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, "/axon.test.v1.Nope/Echo", nil, "hi")
			},
		},
		{
			name: "metadata: request metadata reaches the handler; header and trailer reach the client (-bin, multi-valued, upper-case, empty, with commas)",
			want: outcome{
				resps:   []string{"x-agree=a,b x-agree-bin=0001feff,ff x-agree-comma=a,b x-agree-comma-bin=612c62 x-agree-empty= x-agree-upper=u"},
				header:  "h-x-agree=a,b h-x-agree-bin=0001feff,ff h-x-agree-comma=a,b h-x-agree-comma-bin=612c62 h-x-agree-empty= h-x-agree-upper=u",
				trailer: "t-x-agree=a,b t-x-agree-bin=0001feff,ff t-x-agree-comma=a,b t-x-agree-comma-bin=612c62 t-x-agree-empty= t-x-agree-upper=u",
			},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aMeta, meta, "")
			},
		},
		{
			name: "request metadata under the reserved grpc- prefix does not reach the handler",
			want: outcome{resps: []string{"x-agree=a"}, header: "h-x-agree=a", trailer: "t-x-agree=a"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aMeta, []string{"grpc-agree", "r", "x-agree", "a"}, "")
			},
		},
		{
			name: "response metadata under the reserved grpc- prefix does not reach the client",
			want: outcome{resps: []string{"ok"}, header: "h-ok=1", trailer: "t-ok=1"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aResv, nil, "")
			},
		},
		{
			name: "metadata value with leading and trailing spaces",
			want: outcome{resps: []string{"x-agree= padded "}, header: "h-x-agree= padded ", trailer: "t-x-agree= padded "},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aMeta, []string{"x-agree", " padded "}, "")
			},
			differs: map[string]difference{
				"grpc-web/http1": {
					want: outcome{resps: []string{"x-agree=padded"}, header: "h-x-agree=padded", trailer: "t-x-agree=padded"},
					reason: "HTTP/1.1 field values exclude leading and trailing whitespace (RFC 9110 5.5, RFC 9112 5): " +
						"the server's HTTP parser strips them from the request header, connect-go's from the response's",
				},
				"grpc-web/h2c": {
					want: outcome{resps: []string{"x-agree= padded "}, header: "h-x-agree= padded ", trailer: "t-x-agree=padded"},
					reason: "gRPC-Web trailers travel as an HTTP/1-style header block in the body, and connect-go strips " +
						"whitespace around each value as HTTP/1 parsing does; over HTTP/2 the headers pass unchanged (though " +
						"RFC 9113 8.2.1 forbids such values, so no protocol over HTTP promises them)",
				},
			},
		},
		{
			name: "metadata value with non-ASCII text, not a -bin key",
			want: outcome{resps: []string{"x-agree=naïve"}, header: "h-x-agree=naïve", trailer: "t-x-agree=naïve"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aMeta, []string{"x-agree", "naïve"}, "")
			},
			differs: map[string]difference{"grpc": {
				want: outcome{code: status.Internal, msg: `header key "x-agree" contains value with non-printable ASCII characters`},
				reason: "grpc-go enforces the gRPC spec's ASCII-Value (printable ASCII) for keys without -bin and fails the " +
					"call before sending it; other bytes go in -bin keys. Axon's servers, and connect-go, pass UTF-8 through",
			}},
		},
		{
			name: "unary deadline expires in the handler: DEADLINE_EXCEEDED; the handler had a deadline and its context ends",
			want: outcome{code: status.DeadlineExceeded, msg: "context deadline exceeded", server: "deadline set, context done"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, token string) outcome {
				started, saw := svc.expect(token)
				// Long enough to reach the handler on a loaded machine; the
				// handler then blocks until its context ends.
				dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				o := c.callUnary(dctx, aBlock, nil, token)
				o.server = deadlineSaw(waitSaw(started, saw))
				return o
			},
		},
		{
			name: "unary cancelled by the client while the handler runs: CANCELLED; the handler's context is cancelled",
			want: outcome{code: status.Canceled, msg: "context canceled", server: "context canceled"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, token string) outcome {
				started, saw := svc.expect(token)
				cctx, cancel := context.WithCancel(ctx)
				done := make(chan outcome, 1)
				go func() { done <- c.callUnary(cctx, aBlock, nil, token) }()
				select {
				case <-started:
				case o := <-done:
					cancel()
					o.server = "the call ended before the handler started"
					return o
				}
				cancel()
				o := recv(t, done, "the cancelled call")
				o.server = sawString(waitSaw(started, saw))
				return o
			},
		},
		{
			name: "server streaming: N responses, header and trailer metadata, OK",
			want: outcome{resps: []string{"0", "1", "2"}, header: "h-count=3", trailer: "t-end=done"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aCount, serverStreams, nil, false, "3")
			},
		},
		{
			name: "server streaming: no response, OK",
			want: outcome{header: "h-count=0", trailer: "t-end=done"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aCount, serverStreams, nil, false, "0")
			},
		},
		{
			name: "server streaming: an error after k responses, with header and trailer metadata",
			want: outcome{code: status.FailedPrecondition, msg: "stopped after two", resps: []string{"0", "1"}, header: "h-count=2", trailer: "t-end=done"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aCount, serverStreams, nil, false, "2 9 stopped after two")
			},
		},
		{
			name: "server streaming: an error before any response, after SendHeader",
			want: outcome{code: status.Aborted, msg: "stopped at once", header: "h-count=0", trailer: "t-end=done"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aCount, serverStreams, nil, false, "0 10 stopped at once")
			},
		},
		{
			name: "server streaming cancelled by the client after the first response: CANCELLED; the handler's context is cancelled",
			want: outcome{code: status.Canceled, msg: "context canceled", resps: []string{"ready"}, server: "context canceled"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, token string) outcome {
				started, saw := svc.expect(token)
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				var o outcome
				s, err := c.conn.stream(cctx, aHang, serverStreams, nil)
				if err != nil {
					c.end(&o, err)
					return o
				}
				s.send(token)
				s.closeSend()
				for {
					m, err := s.recv()
					if err != nil {
						c.end(&o, err)
						break
					}
					o.resps = append(o.resps, m)
					cancel() // after the first response
				}
				o.server = sawString(waitSaw(started, saw))
				return o
			},
		},
		{
			name: "server streaming deadline expires in the handler after the first response: DEADLINE_EXCEEDED; the handler's context ends",
			want: outcome{code: status.DeadlineExceeded, msg: "context deadline exceeded", resps: []string{"ready"}, server: "deadline set, context done"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, token string) outcome {
				started, saw := svc.expect(token)
				dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				o := c.callStream(dctx, aHang, serverStreams, nil, false, token)
				o.server = deadlineSaw(waitSaw(started, saw))
				return o
			},
		},
		{
			name: "server-streaming method sent two requests: UNIMPLEMENTED (cardinality)",
			want: outcome{code: status.Unimplemented, msg: aCount + " takes one request message; the client sent more"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aCount, clientStreams, nil, false, "1", "2")
			},
		},
		{
			name: "server-streaming method sent no request: UNIMPLEMENTED (cardinality)",
			want: outcome{code: status.Unimplemented, msg: aCount + " takes one request message; the client sent none"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aCount, clientStreams, nil, false)
			},
		},
		{
			name: "unary method sent two requests on a stream: UNIMPLEMENTED (cardinality)",
			want: outcome{code: status.Unimplemented, msg: aEcho + " takes one request message; the client sent more"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aEcho, clientStreams, nil, false, "1", "2")
			},
		},
		{
			name: "client streaming: the requests joined",
			want: outcome{resps: []string{"abc"}},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aConcat, clientStreams, nil, false, "a", "b", "c")
			},
		},
		{
			name: "client streaming: no request, one (empty) response",
			want: outcome{resps: []string{""}},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aConcat, clientStreams, nil, false)
			},
		},
		{
			name: "client streaming: the handler fails mid-stream",
			want: outcome{code: status.InvalidArgument, msg: "message 1 says fail"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aConcat, clientStreams, nil, false, "a", "fail", "c")
			},
		},
		{
			name: "bidi streaming, ping-pong: each response before the next request",
			want: outcome{resps: []string{"re: 1", "re: 2", "re: 3"}},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aChat, bidiStreams, nil, true, "1", "2", "3")
			},
			skip: map[string]string{"grpc-web/http1": noBidiOverHTTP1},
		},
		{
			name: "bidi streaming, half duplex: all requests, half-close, then the responses",
			want: outcome{resps: []string{"re: 1", "re: 2", "re: 3"}},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aChat, bidiStreams, nil, false, "1", "2", "3")
			},
			skip: map[string]string{"grpc-web/http1": noBidiOverHTTP1},
		},
		{
			name: "bidi streaming: the handler fails after the first response",
			want: outcome{code: status.OutOfRange, msg: "chat says fail", resps: []string{"re: 1"}},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aChat, bidiStreams, nil, true, "1", "fail", "3")
			},
			skip: map[string]string{"grpc-web/http1": noBidiOverHTTP1},
		},
		{
			name: "bidi streaming cancelled by the client after the first response: CANCELLED; the handler's context is cancelled",
			want: outcome{code: status.Canceled, msg: "context canceled", resps: []string{"re: hold"}, server: "context canceled"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, token string) outcome {
				started, saw := svc.expect(token)
				cctx, cancel := context.WithCancel(ctx)
				defer cancel()
				var o outcome
				s, err := c.conn.stream(cctx, aChat, bidiStreams, nil)
				if err != nil {
					c.end(&o, err)
					return o
				}
				if err := s.send("hold " + token); err != nil && err != io.EOF {
					c.end(&o, err)
					return o
				}
				for {
					m, err := s.recv()
					if err != nil {
						c.end(&o, err)
						break
					}
					o.resps = append(o.resps, strings.TrimSuffix(m, " "+token))
					cancel() // after the first response
				}
				o.server = sawString(waitSaw(started, saw))
				return o
			},
			skip: map[string]string{"grpc-web/http1": noBidiOverHTTP1},
		},
		{
			name: "server streaming past the flow-control windows: 200 messages of 3000 bytes",
			want: outcome{resps: []string{"200 messages, 600000 bytes"}},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				o := c.callStream(ctx, aBig, serverStreams, nil, false, "200 3000")
				n := 0
				for _, r := range o.resps {
					n += len(r)
				}
				o.resps = []string{fmt.Sprintf("%d messages, %d bytes", len(o.resps), n)}
				return o
			},
		},
		{
			name: "client streaming past the flow-control windows: 200 messages of 3000 bytes",
			want: outcome{resps: []string{"200 messages, 600000 bytes"}},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				texts := make([]string, 200)
				for i := range texts {
					texts[i] = strings.Repeat("c", 3000)
				}
				return c.callStream(ctx, aTally, clientStreams, nil, false, texts...)
			},
		},
		{
			name: "unary request over max_message: RESOURCE_EXHAUSTED",
			want: outcome{code: status.ResourceExhausted, msg: "request message of 8195 bytes exceeds the limit of 4096 bytes"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aEcho, nil, tooBig)
			},
			differs: map[string]difference{"axon": {
				want:   outcome{code: status.ResourceExhausted, msg: "request message of 8195 bytes exceeds the server's limit of 4096 bytes"},
				reason: "the native server announces max_message in its SETTINGS, so the native client fails the call before sending it; a gRPC client learns no limit, and the server refuses the message on its length prefix",
			}},
		},
		{
			name: "client-streaming message over max_message: RESOURCE_EXHAUSTED",
			want: outcome{code: status.ResourceExhausted, msg: "request message of 8195 bytes exceeds the limit of 4096 bytes"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callStream(ctx, aConcat, clientStreams, nil, false, "small", tooBig)
			},
			differs: map[string]difference{"axon": {
				want:   outcome{code: status.ResourceExhausted, msg: "request message of 8195 bytes exceeds the server's limit of 4096 bytes"},
				reason: "as for unary: the native client knows the server's max_message and refuses to send the message",
			}},
		},
		{
			name: "request metadata over max_metadata: RESOURCE_EXHAUSTED",
			want: outcome{code: status.ResourceExhausted, msg: "request metadata of N bytes exceeds the limit of 1024 bytes"},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return normSizes(c.callUnary(ctx, aMeta, []string{"x-agree-big", strings.Repeat("v", 1536)}, ""))
			},
			differs: map[string]difference{"axon": {
				want: outcome{code: status.ResourceExhausted, msg: "header block of N bytes exceeds the limit of 1024 bytes"},
				reason: "the native protocol applies max_metadata to the whole HEADERS block (method, codec, timeout, metadata), " +
					"gRPC to the metadata counted as HTTP/2 counts a header list; the byte count in the message (N) " +
					"depends on what each client adds (user-agent and the like)",
			}},
		},
	}
	// Every status code a handler can return, with its message.
	for code := status.Canceled; code <= status.Unauthenticated; code++ {
		msg := fmt.Sprintf("handler says %v", code)
		rows = append(rows, agreeRow{
			name: fmt.Sprintf("unary status %v from the handler, with message and trailer", code),
			want: outcome{code: code, msg: msg, trailer: fmt.Sprintf("t-code=%d", code)},
			run: func(t *testing.T, ctx context.Context, c *agreeClient, _ string) outcome {
				return c.callUnary(ctx, aFail, nil, fmt.Sprintf("%d %s", code, msg))
			},
		})
	}
	return rows
}

// deadlineSaw renders what a handler under a deadline saw: its context
// ended by the server's own deadline or by the client giving up at its
// deadline, whichever came first; either way it is done.
func deadlineSaw(r handlerSaw) string {
	if !r.hasDeadline {
		return "no deadline: " + sawString(r)
	}
	if errors.Is(r.err, context.DeadlineExceeded) || errors.Is(r.err, context.Canceled) {
		return "deadline set, context done"
	}
	return "deadline set, " + sawString(r)
}

// lookup finds a row's entry for client c: by its name, else by its
// protocol.
func lookup[V any](m map[string]V, c *agreeClient) (V, bool) {
	if v, ok := m[c.name]; ok {
		return v, true
	}
	v, ok := m[c.protocol]
	return v, ok
}

// TestAgree runs one table of behaviours against one Axon server, whose
// listener serves protocols [axon, grpc, grpc-web] on one port, through
// real clients of each protocol: Axon's kernel.Client over the native
// protocol (with the proto codec and with the binary codec), grpc-go over
// gRPC (h2c), and connect-go with connect.WithGRPCWeb() over gRPC-Web on
// HTTP/1.1 and on h2c. Each row states its expected outcome once (status
// code and message, responses, header and trailer metadata, what the
// handler saw); every client must observe exactly that, except where the
// row lists a legitimate difference with its reason, a client that cannot
// make the call (skip, with the reason), or a known bug (skipped with its
// description; AXON_AGREE_BUGS=1 runs those rows, which then fail until the
// bug is fixed).
func TestAgree(t *testing.T) {
	svc := &agreeService{started: map[string]chan struct{}{}, saw: map[string]chan handlerSaw{}}
	addr := startAgreeServer(t, svc)
	clients := []*agreeClient{
		{name: "axon/proto", protocol: "axon", conn: newNativeConn(t, addr, protocodec.Codec{})},
		{name: "axon/binary", protocol: "axon", conn: newNativeConn(t, addr, binarycodec.New(kernel.Limits{}))},
		{name: "grpc", protocol: "grpc", conn: newGRPCConn(t, addr)},
		{name: "grpc-web/http1", protocol: "grpc-web", conn: newWebConn(t, addr, false)},
		{name: "grpc-web/h2c", protocol: "grpc-web", conn: newWebConn(t, addr, true)},
	}
	for i, row := range agreeRows(svc) {
		t.Run(row.name, func(t *testing.T) {
			for _, c := range clients {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					if reason, ok := lookup(row.skip, c); ok {
						t.Skip(reason)
					}
					if reason, ok := lookup(row.bug, c); ok && os.Getenv("AXON_AGREE_BUGS") == "" {
						t.Skip("bug: " + reason + " (AXON_AGREE_BUGS=1 runs it)")
					}
					if note, ok := lookup(row.notes, c); ok {
						t.Logf("note: %s", note)
					}
					want := row.want
					if d, ok := lookup(row.differs, c); ok {
						want = d.want
						t.Logf("differs legitimately: %s", d.reason)
					}
					ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
					defer cancel()
					got := row.run(t, ctx, c, fmt.Sprintf("%d/%s", i, c.name))
					if got.String() != want.String() {
						t.Errorf("%s:\n got %v\nwant %v", c.name, got, want)
					}
				})
			}
		})
	}
}
