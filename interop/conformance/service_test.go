package conformance_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/axonrpc/axon/interop/conformance"
	v1 "github.com/axonrpc/axon/interop/conformance/internal/gen/conformancev1"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	static "github.com/axonrpc/axon/plugins/registry-static"
	tcp "github.com/axonrpc/axon/plugins/transport-tcp"
)

// The service tests call ConformanceService over the native protocol, with
// Axon's own client: what they check (metadata echoed both ways, errors with
// details, the request info, the duplex modes) is the service's, not a wire
// protocol's. The conformance runner checks the same over gRPC and gRPC-Web.

const (
	mUnary     = "/" + conformance.ServiceName + "/Unary"
	mIdem      = "/" + conformance.ServiceName + "/IdempotentUnary"
	mServer    = "/" + conformance.ServiceName + "/ServerStream"
	mClient    = "/" + conformance.ServiceName + "/ClientStream"
	mBidi      = "/" + conformance.ServiceName + "/BidiStream"
	mUnimpl    = "/" + conformance.ServiceName + "/Unimplemented"
	testWait   = 30 * time.Second
	longDelay  = 60 * 1000 // ms: longer than any test waits
	headerName = "x-conformance-test"
)

// startNative starts the conformance server on the native protocol and
// returns a client of it.
func startNative(t *testing.T) *kernel.BuiltClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	cfg, _, err := conformance.Config(&v1.ServerCompatRequest{MessageReceiveLimit: 1 << 20}, t.TempDir(), "axon")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := conformance.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	cat, err := kernel.NewCatalog([]kernel.Factory{tcp.Factory, native.Factory, protocodec.Factory, static.Factory})
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := kernel.ParseConfig(map[string]any{
		"service":  "caller",
		"codec":    "proto",
		"tls":      map[string]any{"mode": "off"},
		"registry": map[string]any{"use": "static"},
	})
	if err != nil {
		t.Fatal(err)
	}
	target := "tcp://" + net.JoinHostPort(srv.Host, strconv.Itoa(int(srv.Port)))
	c, err := kernel.BuildClient(cat, ccfg, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, headerName, "v1", headerName, "v2")
}

func asAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func hdrs(kv ...string) []*v1.Header {
	var out []*v1.Header
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &v1.Header{Name: kv[i], Value: []string{kv[i+1]}})
	}
	return out
}

// checkInfo checks that info echoes the test's request header, a timeout
// (when wantTimeout), and exactly reqs.
func checkInfo(t *testing.T, info *v1.ConformancePayload_RequestInfo, wantTimeout bool, reqs ...proto.Message) {
	t.Helper()
	if info == nil {
		t.Fatal("no request info")
	}
	var got []string
	for _, h := range info.GetRequestHeaders() {
		if h.GetName() == headerName {
			got = h.GetValue()
		}
	}
	if len(got) != 2 || got[0] != "v1" || got[1] != "v2" {
		t.Errorf("request header %s echoed as %q, want [v1 v2]", headerName, got)
	}
	if wantTimeout {
		if info.TimeoutMs == nil || info.GetTimeoutMs() <= 0 || info.GetTimeoutMs() > testWait.Milliseconds() {
			t.Errorf("timeout_ms = %v, want within (0, %d]", info.TimeoutMs, testWait.Milliseconds())
		}
	}
	checkRequests(t, info, reqs...)
}

func checkRequests(t *testing.T, info *v1.ConformancePayload_RequestInfo, reqs ...proto.Message) {
	t.Helper()
	if len(info.GetRequests()) != len(reqs) {
		t.Fatalf("request info holds %d requests, want %d", len(info.GetRequests()), len(reqs))
	}
	for i, a := range info.GetRequests() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !proto.Equal(m, reqs[i]) {
			t.Errorf("request %d echoed as %v, want %v", i, m, reqs[i])
		}
	}
}

// checkError checks that err has code and msg, and that the details
// trailer holds wantDetails followed, when reqs is not nil, by request info
// echoing reqs.
func checkError(t *testing.T, err error, tr metadata.MD, code status.Code, msg string, wantDetails []*anypb.Any, reqs []proto.Message) {
	t.Helper()
	if status.CodeOf(err) != code || status.FromError(err).Message() != msg {
		t.Fatalf("error %v, want %v %q", err, code, msg)
	}
	raw := tr.Get(conformance.DetailsTrailer)
	if raw == "" {
		if len(wantDetails) > 0 || reqs != nil {
			t.Fatalf("no %s trailer (trailers %v)", conformance.DetailsTrailer, tr)
		}
		return
	}
	gotCode, gotMsg, details, err := conformance.ParseStatusProto([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if gotCode != code || gotMsg != msg {
		t.Errorf("details status %v %q, want %v %q", gotCode, gotMsg, code, msg)
	}
	n := len(wantDetails)
	if reqs != nil {
		n++
	}
	if len(details) != n {
		t.Fatalf("%d details, want %d", len(details), n)
	}
	for i, d := range wantDetails {
		if !proto.Equal(details[i], d) {
			t.Errorf("detail %d = %v, want %v", i, details[i], d)
		}
	}
	if reqs != nil {
		info := new(v1.ConformancePayload_RequestInfo)
		if err := details[n-1].UnmarshalTo(info); err != nil {
			t.Fatalf("last detail is not request info: %v", err)
		}
		checkInfo(t, info, true, reqs...)
	}
}

func TestUnary(t *testing.T) {
	c := startNative(t)
	detail := asAny(t, &v1.Header{Name: "detail", Value: []string{"d"}})
	cases := []struct {
		name    string
		method  string
		def     *v1.UnaryResponseDefinition
		code    status.Code
		msg     string
		details []*anypb.Any
	}{
		{name: "no definition", method: mUnary},
		{name: "data", method: mUnary, def: &v1.UnaryResponseDefinition{
			ResponseHeaders:  hdrs("x-h", "h1", "x-h", "h2"),
			ResponseTrailers: hdrs("x-t", "t1"),
			Response:         &v1.UnaryResponseDefinition_ResponseData{ResponseData: []byte("hello")},
		}},
		{name: "idempotent", method: mIdem, def: &v1.UnaryResponseDefinition{
			Response: &v1.UnaryResponseDefinition_ResponseData{ResponseData: []byte("again")},
		}},
		{name: "error", method: mUnary, code: status.FailedPrecondition, msg: "not now", details: []*anypb.Any{detail}, def: &v1.UnaryResponseDefinition{
			ResponseHeaders:  hdrs("x-h", "h1"),
			ResponseTrailers: hdrs("x-t", "t1"),
			Response: &v1.UnaryResponseDefinition_Error{Error: &v1.Error{
				Code: v1.Code_CODE_FAILED_PRECONDITION, Message: proto.String("not now"), Details: []*anypb.Any{detail},
			}},
		}},
		{name: "error without message", method: mUnary, code: status.Internal, def: &v1.UnaryResponseDefinition{
			Response: &v1.UnaryResponseDefinition_Error{Error: &v1.Error{Code: v1.Code_CODE_INTERNAL}},
		}},
		{name: "error without code", method: mUnary, code: status.Unknown, msg: "what", def: &v1.UnaryResponseDefinition{
			Response: &v1.UnaryResponseDefinition_Error{Error: &v1.Error{Message: proto.String("what")}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := &v1.UnaryRequest{ResponseDefinition: tc.def, RequestData: []byte("req")}
			var hd, tr metadata.MD
			resp := new(v1.UnaryResponse)
			err := c.Invoke(callCtx(t), tc.method, req, resp, kernel.Header(&hd), kernel.Trailer(&tr))
			var echoed proto.Message = req
			if tc.method == mIdem {
				// The same fields, decoded as the method's own type.
				idem := new(v1.IdempotentUnaryRequest)
				b, _ := proto.Marshal(req)
				proto.Unmarshal(b, idem)
				echoed = idem
			}
			for _, h := range tc.def.GetResponseHeaders() {
				if got := hd[h.GetName()]; len(got) == 0 {
					t.Errorf("response header %s missing (headers %v)", h.GetName(), hd)
				}
			}
			if got := hd["x-h"]; tc.name == "data" && (len(got) != 2 || got[0] != "h1" || got[1] != "h2") {
				t.Errorf("response header x-h = %q, want [h1 h2]", got)
			}
			for _, h := range tc.def.GetResponseTrailers() {
				if got := tr.Get(h.GetName()); got != h.GetValue()[0] {
					t.Errorf("response trailer %s = %q, want %q", h.GetName(), got, h.GetValue()[0])
				}
			}
			if tc.code != status.OK {
				checkError(t, err, tr, tc.code, tc.msg, tc.details, []proto.Message{echoed})
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.GetPayload().GetData()) != string(tc.def.GetResponseData()) {
				t.Errorf("data %q, want %q", resp.GetPayload().GetData(), tc.def.GetResponseData())
			}
			checkInfo(t, resp.GetPayload().GetRequestInfo(), true, echoed)
		})
	}
}

func TestUnaryWithoutDeadlineEchoesNoTimeout(t *testing.T) {
	c := startNative(t)
	resp := new(v1.UnaryResponse)
	ctx := metadata.AppendToOutgoingContext(context.Background(), headerName, "v1", headerName, "v2")
	if err := c.Invoke(ctx, mUnary, &v1.UnaryRequest{}, resp); err != nil {
		t.Fatal(err)
	}
	if tm := resp.GetPayload().GetRequestInfo().TimeoutMs; tm != nil {
		t.Errorf("timeout_ms = %d for a call without deadline, want none", *tm)
	}
}

func TestDelayEndsWithTheDeadline(t *testing.T) {
	c := startNative(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := &v1.UnaryRequest{ResponseDefinition: &v1.UnaryResponseDefinition{ResponseDelayMs: longDelay}}
	err := c.Invoke(ctx, mUnary, req, new(v1.UnaryResponse))
	if status.CodeOf(err) != status.DeadlineExceeded {
		t.Fatalf("error %v, want DEADLINE_EXCEEDED", err)
	}
}

func TestUnimplemented(t *testing.T) {
	c := startNative(t)
	err := c.Invoke(callCtx(t), mUnimpl, &v1.UnimplementedRequest{}, new(v1.UnimplementedResponse))
	if status.CodeOf(err) != status.Unimplemented {
		t.Fatalf("error %v, want UNIMPLEMENTED", err)
	}
}

func TestServerStream(t *testing.T) {
	c := startNative(t)
	cases := []struct {
		name string
		def  *v1.StreamResponseDefinition
		code status.Code
	}{
		{name: "no definition"},
		{name: "data", def: &v1.StreamResponseDefinition{
			ResponseHeaders: hdrs("x-h", "h"), ResponseTrailers: hdrs("x-t", "t"),
			ResponseData: [][]byte{[]byte("a"), []byte("b"), []byte("c")},
		}},
		{name: "data then error", code: status.Aborted, def: &v1.StreamResponseDefinition{
			ResponseData: [][]byte{[]byte("a")},
			Error:        &v1.Error{Code: v1.Code_CODE_ABORTED, Message: proto.String("stop")},
		}},
		{name: "error only", code: status.Unavailable, def: &v1.StreamResponseDefinition{
			ResponseHeaders: hdrs("x-h", "h"), ResponseTrailers: hdrs("x-t", "t"),
			Error: &v1.Error{Code: v1.Code_CODE_UNAVAILABLE, Message: proto.String("gone")},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := &v1.ServerStreamRequest{ResponseDefinition: tc.def, RequestData: []byte("r")}
			s, err := kernel.OpenServerStream[v1.ServerStreamRequest, v1.ServerStreamResponse](callCtx(t), c, mServer, req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.def != nil {
				// The header comes before any message or delay.
				hd, err := s.Header()
				if err != nil {
					t.Fatal(err)
				}
				if hd.Get("x-h") != "h" && len(tc.def.GetResponseHeaders()) > 0 {
					t.Errorf("header %v, want x-h: h", hd)
				}
			}
			var got []*v1.ServerStreamResponse
			for {
				m, err := s.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					tr := s.Trailer()
					var reqs []proto.Message
					if len(tc.def.GetResponseData()) == 0 {
						reqs = []proto.Message{req}
					}
					checkError(t, err, tr, tc.code, tc.def.GetError().GetMessage(), nil, reqs)
					break
				}
				got = append(got, m)
			}
			if len(tc.def.GetResponseTrailers()) > 0 && s.Trailer().Get("x-t") != "t" {
				t.Errorf("trailer %v, want x-t: t", s.Trailer())
			}
			if len(got) != len(tc.def.GetResponseData()) {
				t.Fatalf("%d responses, want %d", len(got), len(tc.def.GetResponseData()))
			}
			for i, m := range got {
				if string(m.GetPayload().GetData()) != string(tc.def.GetResponseData()[i]) {
					t.Errorf("response %d data %q", i, m.GetPayload().GetData())
				}
				if i == 0 {
					checkInfo(t, m.GetPayload().GetRequestInfo(), true, req)
				} else if m.GetPayload().GetRequestInfo() != nil {
					t.Errorf("response %d echoes request info; only the first should", i)
				}
			}
		})
	}
}

func TestClientStream(t *testing.T) {
	c := startNative(t)
	for _, fail := range []bool{false, true} {
		t.Run("error="+strconv.FormatBool(fail), func(t *testing.T) {
			def := &v1.UnaryResponseDefinition{
				ResponseHeaders: hdrs("x-h", "h"), ResponseTrailers: hdrs("x-t", "t"),
				Response: &v1.UnaryResponseDefinition_ResponseData{ResponseData: []byte("done")},
			}
			if fail {
				def.Response = &v1.UnaryResponseDefinition_Error{Error: &v1.Error{Code: v1.Code_CODE_RESOURCE_EXHAUSTED, Message: proto.String("full")}}
			}
			reqs := []*v1.ClientStreamRequest{
				{ResponseDefinition: def, RequestData: []byte("1")},
				// A definition after the first request is ignored.
				{ResponseDefinition: &v1.UnaryResponseDefinition{ResponseDelayMs: longDelay}, RequestData: []byte("2")},
				{RequestData: []byte("3")},
			}
			var tr metadata.MD
			s, err := kernel.OpenClientStream[v1.ClientStreamRequest, v1.ClientStreamResponse](callCtx(t), c, mClient, kernel.Trailer(&tr))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range reqs {
				if err := s.Send(r); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := s.CloseAndRecv()
			echoed := []proto.Message{reqs[0], reqs[1], reqs[2]}
			if fail {
				checkError(t, err, s.Trailer(), status.ResourceExhausted, "full", nil, echoed)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.GetPayload().GetData()) != "done" {
				t.Errorf("data %q, want done", resp.GetPayload().GetData())
			}
			checkInfo(t, resp.GetPayload().GetRequestInfo(), true, echoed...)
			if s.Trailer().Get("x-t") != "t" {
				t.Errorf("trailer %v, want x-t: t", s.Trailer())
			}
		})
	}
}

func TestBidiHalfDuplex(t *testing.T) {
	c := startNative(t)
	def := &v1.StreamResponseDefinition{
		ResponseHeaders: hdrs("x-h", "h"),
		ResponseData:    [][]byte{[]byte("a"), []byte("b")},
		Error:           &v1.Error{Code: v1.Code_CODE_DATA_LOSS, Message: proto.String("lost")},
	}
	reqs := []*v1.BidiStreamRequest{{ResponseDefinition: def, RequestData: []byte("1")}, {RequestData: []byte("2")}}
	s, err := kernel.OpenBidiStream[v1.BidiStreamRequest, v1.BidiStreamResponse](callCtx(t), c, mBidi)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var got []*v1.BidiStreamResponse
	for {
		m, err := s.Recv()
		if err != nil {
			checkError(t, err, s.Trailer(), status.DataLoss, "lost", nil, nil)
			break
		}
		got = append(got, m)
	}
	if len(got) != 2 {
		t.Fatalf("%d responses, want 2", len(got))
	}
	checkInfo(t, got[0].GetPayload().GetRequestInfo(), true, reqs[0], reqs[1])
	if got[1].GetPayload().GetRequestInfo() != nil {
		t.Error("second response echoes request info")
	}
}

func TestBidiFullDuplex(t *testing.T) {
	c := startNative(t)
	def := &v1.StreamResponseDefinition{
		ResponseHeaders:  hdrs("x-h", "h"),
		ResponseTrailers: hdrs("x-t", "t"),
		ResponseData:     [][]byte{[]byte("a"), []byte("b"), []byte("c")},
	}
	s, err := kernel.OpenBidiStream[v1.BidiStreamRequest, v1.BidiStreamResponse](callCtx(t), c, mBidi)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		req := &v1.BidiStreamRequest{FullDuplex: true, RequestData: []byte{byte('1' + i)}}
		if i == 0 {
			req.ResponseDefinition = def
		}
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			hd, err := s.Header()
			if err != nil || hd.Get("x-h") != "h" {
				t.Fatalf("header %v, %v; want x-h: h", hd, err)
			}
		}
		// Each response answers the request just sent, before the next.
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if string(m.GetPayload().GetData()) != string(def.ResponseData[i]) {
			t.Errorf("response %d data %q", i, m.GetPayload().GetData())
		}
		if i == 0 {
			checkInfo(t, m.GetPayload().GetRequestInfo(), true, req)
		} else {
			checkRequests(t, m.GetPayload().GetRequestInfo(), req)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("after the last response: %v, want io.EOF", err)
	}
	if s.Trailer().Get("x-t") != "t" {
		t.Errorf("trailer %v, want x-t: t", s.Trailer())
	}
}

func TestBidiFullDuplexErrorWhenResponsesRunOut(t *testing.T) {
	c := startNative(t)
	def := &v1.StreamResponseDefinition{
		ResponseData: [][]byte{[]byte("a")},
		Error:        &v1.Error{Code: v1.Code_CODE_OUT_OF_RANGE, Message: proto.String("no more")},
	}
	s, err := kernel.OpenBidiStream[v1.BidiStreamRequest, v1.BidiStreamResponse](callCtx(t), c, mBidi)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&v1.BidiStreamRequest{FullDuplex: true, ResponseDefinition: def}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	// A second request finds no response left: the call fails at once,
	// without waiting for the client to half-close.
	if err := s.Send(&v1.BidiStreamRequest{RequestData: []byte("2")}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_, err = s.Recv()
	checkError(t, err, s.Trailer(), status.OutOfRange, "no more", nil, nil)
}
