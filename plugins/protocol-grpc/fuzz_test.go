package grpc

// Fuzz targets for the request decoders: the 5-byte message framing
// (gRPC, gRPC-Web, grpc-web-text), gzip with its limit, grpc-timeout, -bin
// metadata, and one whole request served by the real handler. The seed
// corpora are in testdata/fuzz/<FuzzName>; scripts/test.sh runs each target
// briefly.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
)

// fuzzMsg is one length-prefixed message.
func fuzzMsg(flags byte, payload []byte) []byte {
	b := []byte{flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// fuzzGzip compresses b.
func fuzzGzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func fuzzConcat(bs ...[]byte) []byte { return slices.Concat(bs...) }

var fuzzAllocSample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}

// fuzzAllocated is the bytes the process has allocated so far.
func fuzzAllocated() uint64 {
	metrics.Read(fuzzAllocSample)
	return fuzzAllocSample[0].Value.Uint64()
}

// fuzzCodec decodes a message into a *[]byte as is, except that a message
// starting with 0xfe fails with the codec's own INVALID_ARGUMENT and one
// starting with 0xff with a plain error (which the protocol turns into
// INTERNAL).
type fuzzCodec struct{}

func (fuzzCodec) Name() string { return "raw" }
func (fuzzCodec) Marshal(dst []byte, v any) ([]byte, error) {
	return append(dst, *v.(*[]byte)...), nil
}
func (fuzzCodec) Unmarshal(src []byte, v any) error {
	if len(src) > 0 && src[0] == 0xfe {
		return status.New(status.InvalidArgument, "fuzz codec: rejected")
	}
	if len(src) > 0 && src[0] == 0xff {
		return errors.New("fuzz codec: malformed")
	}
	p := v.(*[]byte)
	*p = append((*p)[:0], src...)
	return nil
}

// Modes of FuzzRecv, bits of its mode argument.
const (
	recvGzip    = 1 << iota // the call names grpc-encoding: gzip
	recvText                // grpc-web-text: the body is the base64 of the input
	recvTextRaw             // grpc-web-text: the input itself is the body
	recvUnary               // the method takes one request message
	recvOneByte             // the body arrives one byte per read
)

// fuzzResult is what one RecvMsg gave: a message, io.EOF, or a status
// code.
type fuzzResult struct {
	msg  []byte
	eof  bool
	code status.Code // OK when msg or eof
}

// refGunzip is what gunzip must do, read the simple way: the first max+1
// bytes of the decompressed stream.
func refGunzip(src []byte, max int) ([]byte, status.Code) {
	zr, err := gzip.NewReader(bytes.NewReader(src))
	if err != nil {
		return nil, status.Internal
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
	switch {
	case len(out) > max:
		return nil, status.ResourceExhausted
	case err != nil:
		return nil, status.Internal
	}
	return out, status.OK
}

// refRecv is what RecvMsg must return, call after call, for the decoded
// body: a model of the framing written from the gRPC spec, not from the
// code. It stops at the first error or end.
func refRecv(body []byte, gz, unary bool, max int) []fuzzResult {
	next := func() fuzzResult {
		if len(body) == 0 {
			return fuzzResult{eof: true}
		}
		if len(body) < prefixLen {
			return fuzzResult{code: status.Internal} // ends inside a message
		}
		flags, n := body[0], binary.BigEndian.Uint32(body[1:prefixLen])
		body = body[prefixLen:]
		switch {
		case flags != 0 && flags != flagCompressed: // the trailers flag included
			return fuzzResult{code: status.Internal}
		case uint64(n) > uint64(max):
			return fuzzResult{code: status.ResourceExhausted}
		case uint64(n) > uint64(len(body)):
			return fuzzResult{code: status.Internal}
		}
		msg := body[:n]
		body = body[n:]
		if flags == flagCompressed {
			if !gz {
				return fuzzResult{code: status.Internal}
			}
			var code status.Code
			if msg, code = refGunzip(msg, max); code != status.OK {
				return fuzzResult{code: code}
			}
		}
		switch {
		case len(msg) > 0 && msg[0] == 0xfe:
			return fuzzResult{code: status.InvalidArgument}
		case len(msg) > 0 && msg[0] == 0xff:
			return fuzzResult{code: status.Internal}
		}
		return fuzzResult{msg: bytes.Clone(msg)}
	}
	if unary {
		r := next()
		switch {
		case r.eof:
			return []fuzzResult{{code: status.Unimplemented}} // none
		case r.code != status.OK:
			return []fuzzResult{r}
		case len(body) > 0:
			return []fuzzResult{{code: status.Unimplemented}} // more than one
		}
		return []fuzzResult{r, {eof: true}}
	}
	var out []fuzzResult
	for {
		r := next()
		out = append(out, r)
		if r.eof || r.code != status.OK {
			return out
		}
	}
}

// refBase64 decodes a grpc-web-text body as the spec allows it: whitespace
// ignored, each 4-character quantum decoded on its own (a client may pad
// every chunk it sends). ok is false when a quantum is malformed or the
// body ends inside one; out is then what precedes the fault.
func refBase64(in []byte) (out []byte, ok bool) {
	var q []byte
	for _, c := range in {
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			continue
		}
		q = append(q, c)
		if len(q) == 4 {
			d, err := base64.StdEncoding.DecodeString(string(q))
			if err != nil {
				return out, false
			}
			out = append(out, d...)
			q = q[:0]
		}
	}
	return out, len(q) == 0
}

var fuzzRecvSeeds = []struct {
	body []byte
	mode byte
	max  uint16
}{
	{fuzzMsg(0, []byte("hello")), 0, 1024},
	{fuzzConcat(fuzzMsg(0, []byte("one")), fuzzMsg(0, nil), fuzzMsg(0, []byte("three"))), 0, 1024},
	{fuzzMsg(0, []byte("hello")), recvUnary, 1024},
	{fuzzConcat(fuzzMsg(0, []byte("a")), fuzzMsg(0, []byte("b"))), recvUnary, 1024}, // more than one
	{nil, recvUnary, 1024},                                                   // none
	{fuzzMsg(0, bytes.Repeat([]byte("x"), 1024)), 0, 1024},                   // exactly the limit
	{fuzzMsg(0, bytes.Repeat([]byte("x"), 1025)), 0, 1024},                   // one over
	{[]byte{0, 0xff, 0xff, 0xff, 0xff}, 0, 1024},                             // claims 4 GiB
	{[]byte{0, 0, 0, 0x10, 0, 'a', 'b'}, 0, 8192},                            // ends inside a message
	{[]byte{0, 0, 0}, 0, 1024},                                               // ends inside a prefix
	{fuzzMsg(flagTrailers, []byte("grpc-status: 0\r\n")), 0, 1024},           // a gRPC-Web trailers frame from a client
	{fuzzMsg(0x02, []byte("x")), 0, 1024},                                    // unknown flag
	{fuzzMsg(flagCompressed, fuzzGzip([]byte("zipped"))), recvGzip, 1024},    // compressed
	{fuzzMsg(flagCompressed, fuzzGzip([]byte("zipped"))), 0, 1024},           // compressed, no grpc-encoding
	{fuzzMsg(flagCompressed, fuzzGzip(make([]byte, 1<<16))), recvGzip, 1024}, // decompresses above the limit
	{fuzzMsg(flagCompressed, []byte("not gzip")), recvGzip, 1024},
	{fuzzConcat(fuzzMsg(0, []byte("hi")), fuzzMsg(0, []byte("yo"))), recvText | recvOneByte, 1024},
	{[]byte("AAAAAAJoaQ==AAAAAAJ5bw==\r\n"), recvTextRaw, 1024}, // chunks padded on their own
	{[]byte("AAAAAAJoaQ=*"), recvTextRaw | recvUnary, 1024},     // not base64
	{fuzzMsg(0, []byte{0xfe, 1}), 0, 1024},                      // the codec's own error
	{fuzzMsg(0, []byte{0xff, 1}), 0, 1024},                      // a codec failure
	{fuzzMsg(0, nil), 0, 0},                                     // a limit of 0
}

// FuzzRecv reads a request body with RecvMsg: the gRPC message framing,
// gzip and grpc-web-text. Every result must be what refRecv says (for
// grpc-web-text, of the body's decoding), nothing may be allocated for a
// message above the limit, and errors are status errors: RESOURCE_EXHAUSTED
// over the limit, INTERNAL when malformed.
func FuzzRecv(f *testing.F) {
	for _, s := range fuzzRecvSeeds {
		f.Add(s.body, s.mode, s.max)
	}
	f.Fuzz(func(t *testing.T, in []byte, mode byte, max16 uint16) {
		max := int(max16) % 8193
		gz, unary := mode&recvGzip != 0, mode&recvUnary != 0
		text := mode&(recvText|recvTextRaw) != 0
		body, plain := in, in // what the stream reads; what it decodes to
		cleanText := true
		if mode&recvText != 0 {
			body = base64.StdEncoding.AppendEncode(nil, in)
		} else if mode&recvTextRaw != 0 {
			plain, cleanText = refBase64(in)
		}
		var r io.Reader = bytes.NewReader(body)
		if mode&recvOneByte != 0 {
			r = iotest.OneByteReader(r)
		}
		if text {
			r = &base64Reader{r: r}
		}
		s := &stream{h: &handler{maxMessage: max}, body: r, ctx: context.Background(), codec: fuzzCodec{}, reqGzip: gz}
		s.call.Method = &kernel.MethodDesc{FullName: "/fuzz.Svc/M", ClientStreams: !unary}

		before := fuzzAllocated()
		var got []fuzzResult
		var lastErr error
		for {
			var m []byte
			err := s.RecvMsg(&m)
			switch {
			case err == nil:
				if len(m) > max {
					t.Fatalf("received a message of %d bytes; the limit is %d", len(m), max)
				}
				got = append(got, fuzzResult{msg: m})
				continue
			case err == io.EOF:
				got = append(got, fuzzResult{eof: true})
			default:
				var se *status.Error
				if !errors.As(err, &se) {
					t.Fatalf("RecvMsg: %v (%T) is not a status error", err, err)
				}
				got = append(got, fuzzResult{code: se.Code()})
				lastErr = err
			}
			break
		}
		allocated := fuzzAllocated() - before
		if c := cap(s.recvBuf); c > max {
			t.Fatalf("a receive buffer of %d bytes for a limit of %d", c, max)
		}
		if c := cap(s.unzipBuf); c > 2*max+64 {
			t.Fatalf("a decompression buffer of %d bytes for a limit of %d", c, max)
		}
		// A gzip reader takes some 50 KiB, and the fuzzing engine's own
		// allocations count too (the figure is the process's); messages
		// are bounded by max, the base64 copy by the input.
		if limit := uint64(1<<20 + 8*max + 64*len(in)); allocated > limit {
			t.Fatalf("allocated %d bytes (limit %d) reading %d bytes, max_message %d", allocated, limit, len(in), max)
		}

		want := refRecv(plain, gz, unary, max)
		if !text || cleanText {
			if !equalResults(got, want) {
				t.Fatalf("RecvMsg gave %s (last error %v), want %s", showResults(got), lastErr, showResults(want))
			}
			return
		}
		// A malformed grpc-web-text body: what precedes the fault reads
		// as the model says, then the read fails.
		last := got[len(got)-1]
		if last.eof || last.code == status.OK {
			t.Fatalf("a malformed grpc-web-text body read to its end: %s", showResults(got))
		}
		if n := len(got) - 1; n > len(want) || !equalResults(got[:n], want[:n]) {
			t.Fatalf("RecvMsg gave %s, want a prefix of %s", showResults(got), showResults(want))
		}
		switch last.code {
		case status.Internal, status.ResourceExhausted, status.InvalidArgument, status.Unimplemented:
		default:
			t.Fatalf("malformed grpc-web-text body: %v", lastErr)
		}
	})
}

func equalResults(a, b []fuzzResult) bool {
	return slices.EqualFunc(a, b, func(x, y fuzzResult) bool {
		return x.eof == y.eof && x.code == y.code && bytes.Equal(x.msg, y.msg)
	})
}

func showResults(rs []fuzzResult) string {
	var parts []string
	for _, r := range rs {
		switch {
		case r.eof:
			parts = append(parts, "EOF")
		case r.code != status.OK:
			parts = append(parts, r.code.String())
		default:
			parts = append(parts, strconv.Itoa(len(r.msg))+" bytes")
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// FuzzGunzip decompresses with a limit: the output is the stream's, never
// above max (RESOURCE_EXHAUSTED instead), a malformed stream is INTERNAL,
// and the buffer grows with the output, not with what the stream claims.
// With compress set, the input is compressed first, so that the fuzzer
// also explores valid streams.
func FuzzGunzip(f *testing.F) {
	f.Add([]byte("hello, world"), true, uint16(1024), uint16(0))
	f.Add(make([]byte, 5000), true, uint16(1024), uint16(0))
	f.Add(fuzzGzip(make([]byte, 1<<20)), false, uint16(4096), uint16(100)) // a bomb
	f.Add(fuzzConcat(fuzzGzip([]byte("one")), fuzzGzip([]byte("two"))), false, uint16(1024), uint16(0))
	f.Add(fuzzGzip([]byte("hello"))[:12], false, uint16(1024), uint16(0))
	f.Add([]byte{}, false, uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, in []byte, compress bool, max16, prefill uint16) {
		max := int(max16)
		src := in
		if compress {
			src = fuzzGzip(in)
		}
		dst := make([]byte, int(prefill)%4096, int(prefill)%4096+int(prefill)%7)
		out, err := gunzip(dst, src, max)
		want, code := refGunzip(src, max)
		// A stream whose header does not parse gets dst back as it was.
		if len(out) > max+1 && (err == nil || unsafe.SliceData(out) != unsafe.SliceData(dst) || len(out) != len(dst)) {
			t.Fatalf("gunzip returned %d bytes for a limit of %d", len(out), max)
		}
		if cap(dst) <= 2*max+64 && cap(out) > 2*max+64 {
			t.Fatalf("gunzip grew a %d-byte buffer for a limit of %d", cap(out), max)
		}
		if code == status.OK {
			if err != nil || !bytes.Equal(out, want) {
				t.Fatalf("gunzip: %d bytes, %v; want %d bytes", len(out), err, len(want))
			}
			return
		}
		if status.CodeOf(err) != code {
			t.Fatalf("gunzip: %v; want %v", err, code)
		}
	})
}

// FuzzParseTimeout parses grpc-timeout values: a value is accepted exactly
// when it is 1 to 8 ASCII digits and a unit, and then means that many
// units, saturating at the largest duration.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"1H", "30S", "100m", "5u", "99999999n", "99999999H", "0n", "", "S", "123456789S", "1s", "-1S", "+1S", "1_0S", "١S", "00000000M"} {
		f.Add(s)
	}
	units := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second, 'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseTimeout(s)
		valid := len(s) >= 2 && len(s) <= 9
		var unit time.Duration
		if valid {
			unit, valid = units[s[len(s)-1]]
			for i := 0; valid && i < len(s)-1; i++ {
				valid = s[i] >= '0' && s[i] <= '9'
			}
		}
		if !valid {
			if err == nil {
				t.Fatalf("parseTimeout(%q) = %v, want an error", s, d)
			}
			return
		}
		if err != nil {
			t.Fatalf("parseTimeout(%q): %v", s, err)
		}
		n, _ := new(big.Int).SetString(s[:len(s)-1], 10)
		n.Mul(n, big.NewInt(int64(unit)))
		want := time.Duration(math.MaxInt64)
		if n.IsInt64() {
			want = time.Duration(n.Int64())
		}
		if d != want {
			t.Fatalf("parseTimeout(%q) = %v, want %v", s, d, want)
		}
	})
}

// fuzzHeader builds request headers from lines "Name: value", added as
// net/http adds them; a line starting with "!" sets the name as is (not
// canonical), as a handler could see it from another server.
func fuzzHeader(in string) http.Header {
	h := http.Header{}
	for line := range strings.SplitSeq(in, "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		if raw, ok := strings.CutPrefix(k, "!"); ok {
			h[raw] = append(h[raw], v)
		} else {
			h.Add(k, v)
		}
	}
	return h
}

// FuzzIncomingMD converts request headers to metadata (kernel/metadata has
// no decoder of its own: the gRPC protocol decodes metadata from HTTP
// headers, -bin values from base64). Keys come out lower-case, without the
// transport's and grpc-* headers; text values as sent; the size is counted
// as HTTP/2 counts it; a malformed -bin value fails; and metadata that
// putMD sends back as headers converts to the same metadata.
func FuzzIncomingMD(f *testing.F) {
	for _, s := range []string{
		"X-Key: value\nX-Key: second",
		"X-Key-Bin: aGVsbG8\nX-Other-Bin: aGVsbG8=",
		"X-Key-Bin: YQ, Yg==,,Yw",
		"X-Key-Bin: not base64!",
		"X-Key-Bin: YQ=",
		"Content-Type: application/grpc\nTe: trailers\nGrpc-Timeout: 1S\nGrpc-Encoding: gzip\nUser-Agent: fuzz",
		"!x-lower: v\n!X-LOWER: w",
		"Access-Control-Allow-Origin: *\nX-Ünïcode: é",
		"Axon-Schema-Bin: AAEC\nX: ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h := fuzzHeader(in)
		md, size, err := incomingMD(h)
		if err != nil {
			if !strings.Contains(err.Error(), "malformed base64") {
				t.Fatalf("incomingMD: %v", err)
			}
			bad := false
			for k, vs := range h {
				key := strings.ToLower(k)
				if !isBin(key) || reservedRequest[key] || strings.HasPrefix(key, "grpc-") {
					continue
				}
				for _, v := range vs {
					for p := range strings.SplitSeq(v, ",") {
						if _, err := decodeBin(strings.TrimSpace(p)); err != nil {
							bad = true
						}
					}
				}
			}
			if !bad {
				t.Fatalf("incomingMD failed, yet every -bin value decodes: %v", err)
			}
			return
		}
		wantSize, wantText := 0, map[string][]string{}
		for k, vs := range h {
			key := strings.ToLower(k)
			if reservedRequest[key] || strings.HasPrefix(key, "grpc-") {
				continue
			}
			for _, v := range vs {
				wantSize += len(key) + len(v) + 32
			}
			if !isBin(key) {
				wantText[key] = append(wantText[key], vs...)
			}
		}
		if size != wantSize {
			t.Fatalf("size %d, want %d", size, wantSize)
		}
		for k, vs := range md {
			if k != strings.ToLower(k) || reservedRequest[k] || strings.HasPrefix(k, "grpc-") {
				t.Fatalf("metadata key %q", k)
			}
			if !isBin(k) {
				// Headers that differ only in case merge in map order.
				if w := wantText[k]; len(w) != len(vs) || !sameValues(w, vs) {
					t.Fatalf("metadata %q = %q, want %q", k, vs, w)
				}
			}
		}
		// Sent back as headers, the metadata converts to itself.
		back := http.Header{}
		putMD(back, md, http.CanonicalHeaderKey)
		md2, _, err := incomingMD(back)
		if err != nil {
			t.Fatalf("metadata sent back does not convert: %v", err)
		}
		for k, vs := range md {
			if !validKey(k) || reservedResponse(k) {
				continue
			}
			if !slices.Equal(md2[k], vs) {
				t.Fatalf("metadata %q: %q sent back converts to %q", k, vs, md2[k])
			}
		}
		for k := range md2 {
			if _, ok := md[k]; !ok {
				t.Fatalf("metadata %q appeared on the way back", k)
			}
		}
	})
}

// sameValues reports whether a and b hold the same values, in any order.
func sameValues(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// FuzzBase64Reader decodes grpc-web-text bodies delivered in arbitrary
// chunks and read into arbitrary buffers: the output is the body's
// decoding whatever the chunking, and a malformed body fails after what
// precedes the fault.
func FuzzBase64Reader(f *testing.F) {
	for _, s := range []string{"aGVsbG8=", "aGk=aGk=YQ==", "aGVs\r\nbG8=\n", "aGVsbG", "a*==", "", "====", "YQ==YQ", " \t", "aGk=\x00"} {
		f.Add([]byte(s), uint16(0x0301))
	}
	f.Fuzz(func(t *testing.T, in []byte, sizes uint16) {
		chunk, read := 1+int(sizes&0xff)%32, 1+int(sizes>>8)%32
		r := &base64Reader{r: &fuzzChunker{b: in, n: chunk}}
		var got []byte
		var err error
		buf := make([]byte, read)
		for range 2*len(in) + 4 {
			var n int
			n, err = r.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		want, ok := refBase64(in)
		if !bytes.Equal(got, want) {
			t.Fatalf("read %q, want %q", got, want)
		}
		if ok && err != io.EOF || !ok && (err == nil || err == io.EOF) {
			t.Fatalf("read ended with %v; the body is well formed: %v", err, ok)
		}
	})
}

// fuzzChunker returns b in reads of at most n bytes, the last with io.EOF.
type fuzzChunker struct {
	b []byte
	n int
}

func (c *fuzzChunker) Read(p []byte) (int, error) {
	n := copy(p, c.b[:min(c.n, len(c.b))])
	c.b = c.b[n:]
	if len(c.b) == 0 {
		return n, io.EOF
	}
	return n, nil
}

// The service FuzzServeHTTP calls; no handler blocks.
const (
	fuzzSvc   = "axon.fuzz.v1.Fuzz"
	fuzzEcho  = "/" + fuzzSvc + "/Echo"
	fuzzCount = "/" + fuzzSvc + "/Count"
	fuzzSum   = "/" + fuzzSvc + "/Sum"
	fuzzChat  = "/" + fuzzSvc + "/Chat"
)

// fuzzMaxMessage and fuzzMaxMetadata are FuzzServeHTTP's limits, small so
// that inputs reach them.
const (
	fuzzMaxMessage  = 1 << 10
	fuzzMaxMetadata = 256
)

var fuzzHandler = sync.OnceValue(func() *handler {
	echo := func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		md := metadata.FromIncomingContext(ctx)
		for _, k := range []string{"x-echo", "x-echo-bin"} {
			if v := md[k]; len(v) > 0 {
				kernel.SetHeader(ctx, metadata.MD{k: v})
				kernel.SetTrailer(ctx, metadata.MD{k + "-t": v})
			}
		}
		switch in.Value {
		case "fail":
			return nil, status.New(status.InvalidArgument, "bad request: 100% wrong, naïve\n")
		case "panic":
			panic("handler bug")
		}
		return in, nil
	}
	count := func(in *wrapperspb.Int32Value, s kernel.ServerStreamingServer[wrapperspb.Int32Value]) error {
		for i := range min(in.Value, 3) {
			if err := s.Send(wrapperspb.Int32(i)); err != nil {
				return err
			}
		}
		return nil
	}
	sum := func(s kernel.ClientStreamingServer[wrapperspb.Int32Value, wrapperspb.Int32Value]) error {
		var total int32
		for {
			m, err := s.Recv()
			if err == io.EOF {
				return s.SendAndClose(wrapperspb.Int32(total))
			}
			if err != nil {
				return err
			}
			total += m.Value
		}
	}
	chat := func(s kernel.BidiStreamingServer[wrapperspb.StringValue, wrapperspb.StringValue]) error {
		if err := s.SendHeader(metadata.New("x-chat", "hello")); err != nil {
			return err
		}
		for {
			m, err := s.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if m.Value == "stop" {
				return status.New(status.InvalidArgument, "stopped")
			}
			if err := s.Send(wrapperspb.String("re: " + m.Value)); err != nil {
				return err
			}
		}
	}
	svc := kernel.NewService(fuzzSvc,
		kernel.Unary("Echo", echo),
		kernel.ServerStreaming("Count", count),
		kernel.ClientStreaming("Sum", sum),
		kernel.BidiStreaming("Chat", chat),
	)
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc})
	if err != nil {
		panic(err)
	}
	d := kernel.NewDispatcher(table, nil, []kernel.Codec{protocodec.Codec{}},
		kernel.Limits{MaxMessage: fuzzMaxMessage, MaxMetadata: fuzzMaxMetadata}, slog.New(slog.DiscardHandler))
	// The handler as the server builds it (its HTTP server is never
	// started).
	return newServer(d, DefaultConfig(), "grpc-web").h
})

var fuzzContentTypes = []string{
	"application/grpc", "application/grpc+proto", "application/grpc-web", "application/grpc-web+proto",
	"application/grpc-web-text", "application/grpc-web-text+proto", "application/grpc+json", "text/plain",
}

// Bits of FuzzServeHTTP's sel argument besides the content type (the low
// three bits).
const (
	serveHTTP1   = 1 << (iota + 3) // HTTP/1.1, not HTTP/2
	serveGzip                      // grpc-encoding: gzip
	serveTextRaw                   // grpc-web-text: the body as is, not its base64
	serveGet                       // GET, not POST
	serveBrotli                    // grpc-encoding: br (unsupported)
)

// fuzzStringMsg is a request message holding a StringValue.
func fuzzStringMsg(s string) []byte { return fuzzMsg(0, append([]byte{0x0a, byte(len(s))}, s...)) }

// FuzzServeHTTP serves one fuzzed request with the real handler (through an
// httptest.ResponseRecorder): whatever the request, the handler must not
// panic, must answer with a plain HTTP error or a well-formed gRPC
// response (frames whose lengths add up, one status, for gRPC-Web in a
// last trailers frame), and the status must be a known code other than
// UNKNOWN with a percent-encoded message.
func FuzzServeHTTP(f *testing.F) {
	seeds := []struct {
		sel                 byte
		path, timeout, k, v string
		body                []byte
	}{
		{0, fuzzEcho, "", "", "", fuzzStringMsg("hello")},
		{0, fuzzEcho, "1S", "X-Echo-Bin", "aGk", fuzzStringMsg("hello")},
		{0, fuzzEcho, "", "", "", fuzzStringMsg("fail")},
		{0, fuzzEcho, "", "", "", fuzzStringMsg("panic")},
		{0, fuzzEcho, "0n", "", "", fuzzStringMsg("late")},
		{0, fuzzEcho, "", "X-Big", strings.Repeat("m", 300), fuzzStringMsg("big metadata")},
		{0, fuzzEcho, "", "X-Key-Bin", "not base64!", fuzzStringMsg("bad -bin")},
		{0, fuzzEcho, "1x", "", "", fuzzStringMsg("bad timeout")},
		{0, fuzzEcho, "", "", "", []byte{0, 0xff, 0xff, 0xff, 0xff}},
		{0, fuzzEcho, "", "", "", fuzzMsg(0, make([]byte, fuzzMaxMessage+1))},
		{serveGzip, fuzzEcho, "", "", "", fuzzMsg(flagCompressed, fuzzGzip(make([]byte, 4*fuzzMaxMessage)))},
		{serveGzip, fuzzEcho, "", "", "", fuzzMsg(flagCompressed, fuzzGzip([]byte{0x0a, 2, 'h', 'i'}))},
		{2, fuzzCount, "", "", "", fuzzMsg(0, []byte{0x08, 3})},
		{2 | serveHTTP1, fuzzSum, "", "", "", fuzzConcat(fuzzMsg(0, []byte{0x08, 1}), fuzzMsg(0, []byte{0x08, 2}))},
		{4 | serveHTTP1, fuzzChat, "", "", "", fuzzConcat(fuzzStringMsg("a"), fuzzStringMsg("stop"))},
		{4 | serveTextRaw | serveHTTP1, fuzzEcho, "", "", "", []byte("AAAAAAcKBWhlbGxv")},
		{4 | serveTextRaw, fuzzEcho, "", "", "", []byte("AAAAAAcKBWhl*")},
		{2, fuzzEcho, "", "", "", fuzzMsg(flagTrailers, []byte("grpc-status: 0\r\n"))},
		{6, fuzzEcho, "", "", "", fuzzStringMsg("json")},
		{7, fuzzEcho, "", "", "", nil},
		{0 | serveHTTP1, fuzzEcho, "", "", "", fuzzStringMsg("http/1.1")},
		{serveGet, fuzzEcho, "", "Origin", "https://elsewhere.example", nil},
		{serveBrotli, fuzzEcho, "", "", "", nil},
		{0, "/axon.fuzz.v1.Fuzz/Nope", "", "", "", nil},
		{0, "//", "", "", "", nil},
	}
	for _, s := range seeds {
		f.Add(s.sel, s.path, s.timeout, s.k, s.v, s.body)
	}
	f.Fuzz(func(t *testing.T, sel byte, path, timeout, k, v string, body []byte) {
		h := fuzzHandler()
		ct := fuzzContentTypes[sel&7]
		if strings.HasPrefix(ct, "application/grpc-web-text") && sel&serveTextRaw == 0 {
			body = base64.StdEncoding.AppendEncode(nil, body)
		}
		method := http.MethodPost
		if sel&serveGet != 0 {
			method = http.MethodGet
		}
		r := httptest.NewRequest(method, "/", bytes.NewReader(body))
		r.URL.Path = path
		if sel&serveHTTP1 == 0 {
			r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
		}
		if httpguts.ValidHeaderFieldName(k) && httpguts.ValidHeaderFieldValue(v) {
			r.Header.Add(k, v)
		}
		r.Header.Set("Content-Type", ct)
		if timeout != "" && httpguts.ValidHeaderFieldValue(timeout) {
			r.Header.Set("Grpc-Timeout", timeout)
		}
		switch {
		case sel&serveBrotli != 0:
			r.Header.Set("Grpc-Encoding", "br")
		case sel&serveGzip != 0:
			r.Header.Set("Grpc-Encoding", "gzip")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		checkResponse(t, w)
		if n := h.budget.Used(); n != 0 {
			t.Fatalf("%d bytes of the buffer budget still held after the call", n)
		}
	})
}

// checkResponse checks that a response is a plain HTTP error or a
// well-formed gRPC or gRPC-Web response.
func checkResponse(t *testing.T, w *httptest.ResponseRecorder) {
	res := w.Result()
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusForbidden, http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType, http.StatusHTTPVersionNotSupported:
		return
	default:
		t.Fatalf("HTTP status %d", res.StatusCode)
	}
	ct := res.Header.Get("Content-Type")
	if _, ok := parseContentType(ct); !ok {
		t.Fatalf("response content type %q", ct)
	}
	web, text := strings.HasPrefix(ct, "application/grpc-web"), strings.HasPrefix(ct, "application/grpc-web-text")
	body := w.Body.Bytes()
	if text {
		// Each write is padded on its own.
		var ok bool
		if body, ok = refBase64(body); !ok {
			t.Fatalf("grpc-web-text response is not base64: %q", w.Body.Bytes())
		}
	}
	var statuses []string
	if v := res.Header.Values("Grpc-Status"); len(v) > 0 {
		statuses = append(statuses, v...)
		if len(body) > 0 {
			t.Fatalf("a trailers-only response with a %d-byte body", len(body))
		}
	}
	statuses = append(statuses, res.Trailer.Values("Grpc-Status")...)
	if m := res.Trailer.Get("Grpc-Message") + res.Header.Get("Grpc-Message"); m != "" {
		checkMessage(t, m)
	}
	for len(body) > 0 {
		if len(body) < prefixLen {
			t.Fatalf("response ends inside a message prefix: %x", body)
		}
		flags, n := body[0], binary.BigEndian.Uint32(body[1:prefixLen])
		if uint64(n) > uint64(len(body)-prefixLen) {
			t.Fatalf("response frame of %d bytes, %d left", n, len(body)-prefixLen)
		}
		payload := body[prefixLen : prefixLen+int(n)]
		body = body[prefixLen+int(n):]
		switch flags {
		case 0:
		case flagCompressed:
			if res.Header.Get("Grpc-Encoding") != "gzip" {
				t.Fatal("a compressed response message without grpc-encoding")
			}
			if _, err := gunzip(nil, payload, math.MaxInt32); err != nil {
				t.Fatalf("compressed response message: %v", err)
			}
		case flagTrailers:
			if !web || len(body) > 0 {
				t.Fatalf("a trailers frame that is not gRPC-Web's last (web %v, %d bytes follow)", web, len(body))
			}
			for line := range strings.SplitSeq(strings.TrimSuffix(string(payload), "\r\n"), "\r\n") {
				name, value, ok := strings.Cut(line, ": ")
				if !ok {
					t.Fatalf("trailers frame line %q", line)
				}
				switch name {
				case "grpc-status":
					statuses = append(statuses, value)
				case "grpc-message":
					checkMessage(t, value)
				}
			}
		default:
			t.Fatalf("response frame flags %#x", flags)
		}
	}
	if len(statuses) != 1 {
		t.Fatalf("grpc-status %q: want one", statuses)
	}
	code, err := strconv.Atoi(statuses[0])
	if err != nil || code < 0 || code > int(status.Unauthenticated) || code == int(status.Unknown) {
		t.Fatalf("grpc-status %q", statuses[0])
	}
}

// checkMessage checks that a grpc-message value is percent-encoded:
// printable ASCII.
func checkMessage(t *testing.T, m string) {
	for i := 0; i < len(m); i++ {
		if m[i] < 0x20 || m[i] > 0x7e {
			t.Fatalf("grpc-message %q is not percent-encoded", m)
		}
	}
}
