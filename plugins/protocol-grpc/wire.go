package grpc

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// A gRPC message on the wire: a flags byte, a 4-byte big-endian length, and
// the message. Flag bit 0 marks a compressed message; gRPC-Web's trailers
// frame sets bit 7.
const (
	prefixLen      = 5
	flagCompressed = 0x01
	flagTrailers   = 0x80
)

// parseTimeout parses a grpc-timeout value: at most 8 digits and a unit
// (H, M, S, m, u, n).
func parseTimeout(s string) (time.Duration, error) {
	if len(s) < 2 || len(s) > 9 {
		return 0, fmt.Errorf("protocol.grpc: malformed grpc-timeout %q", s)
	}
	n, err := strconv.ParseUint(s[:len(s)-1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("protocol.grpc: malformed grpc-timeout %q: %w", s, err)
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, fmt.Errorf("protocol.grpc: malformed grpc-timeout %q: unknown unit", s)
	}
	if n > uint64(math.MaxInt64/unit) {
		return math.MaxInt64, nil
	}
	return time.Duration(n) * unit, nil
}

// percentEncode encodes a grpc-message value: bytes outside printable ASCII,
// and '%', become %XX.
func percentEncode(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// statusProto encodes a google.rpc.Status with code and message (fields 1
// and 2), the value of grpc-status-details-bin when the handler gave none.
func statusProto(code status.Code, msg string) []byte {
	var b []byte
	if code != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(code))
	}
	if msg != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, msg)
	}
	return b
}

// isBin reports whether a metadata key carries binary values, which travel
// base64-encoded.
func isBin(key string) bool { return strings.HasSuffix(key, "-bin") }

// decodeBin decodes a -bin header value, padded or not.
func decodeBin(v string) (string, error) {
	if len(v)%4 == 0 {
		b, err := base64.StdEncoding.DecodeString(v)
		return string(b), err
	}
	b, err := base64.RawStdEncoding.DecodeString(v)
	return string(b), err
}

func encodeBin(v string) string { return base64.RawStdEncoding.EncodeToString([]byte(v)) }

// reservedRequest lists request headers that are the transport's, not
// metadata.
var reservedRequest = map[string]bool{
	"content-type": true, "content-length": true, "te": true, "connection": true,
	"keep-alive": true, "proxy-connection": true, "transfer-encoding": true,
	"upgrade": true, "host": true, "trailer": true,
}

// incomingMD converts request headers to metadata: keys lower-cased, -bin
// values decoded (a comma-separated header holds several), reserved headers
// and grpc-* left out. size is the metadata's size counted as HTTP/2 counts
// a header list: name, value and 32 bytes per field.
func incomingMD(h http.Header) (md metadata.MD, size int, err error) {
	md = make(metadata.MD, len(h))
	for k, vs := range h {
		key := strings.ToLower(k)
		if reservedRequest[key] || strings.HasPrefix(key, "grpc-") {
			continue
		}
		for _, v := range vs {
			size += len(key) + len(v) + 32
			if !isBin(key) {
				md[key] = append(md[key], v)
				continue
			}
			for part := range strings.SplitSeq(v, ",") {
				d, err := decodeBin(strings.TrimSpace(part))
				if err != nil {
					return nil, 0, fmt.Errorf("protocol.grpc: metadata %q: malformed base64: %w", key, err)
				}
				md[key] = append(md[key], d)
			}
		}
	}
	return md, size, nil
}

// validKey reports whether key may be sent as a metadata key: lower-case
// letters, digits, '-', '_' and '.'.
func validKey(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// reservedResponse reports whether key must not be sent as response
// metadata, because the protocol owns it.
func reservedResponse(key string) bool {
	return strings.HasPrefix(key, "grpc-") || reservedRequest[key] || strings.HasPrefix(key, "access-control-")
}

// putMD adds md to h as headers under keys made by name, -bin values
// base64-encoded; invalid and reserved keys are skipped.
func putMD(h http.Header, md metadata.MD, name func(string) string) {
	for k, vs := range md {
		if !validKey(k) || reservedResponse(k) {
			continue
		}
		hk := name(k)
		for _, v := range vs {
			if isBin(k) {
				v = encodeBin(v)
			}
			h[hk] = append(h[hk], v)
		}
	}
}

var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}
var gzipReaders sync.Pool

// gunzip decompresses src into dst[:0], failing with RESOURCE_EXHAUSTED once
// the output exceeds max bytes. Output grows as it arrives, never from a
// size the peer claims.
func gunzip(dst, src []byte, max int) ([]byte, error) {
	var zr *gzip.Reader
	if v := gzipReaders.Get(); v != nil {
		zr = v.(*gzip.Reader)
		if err := zr.Reset(bytes.NewReader(src)); err != nil {
			return dst, status.Errorf(status.Internal, "decompress request: %v", err)
		}
	} else {
		var err error
		if zr, err = gzip.NewReader(bytes.NewReader(src)); err != nil {
			return dst, status.Errorf(status.Internal, "decompress request: %v", err)
		}
	}
	defer gzipReaders.Put(zr)
	dst = dst[:0]
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := zr.Read(dst[len(dst):min(cap(dst), max+1)])
		dst = dst[:len(dst)+n]
		if len(dst) > max {
			return dst, status.Errorf(status.ResourceExhausted, "decompressed request message exceeds the limit of %d bytes", max)
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, status.Errorf(status.Internal, "decompress request: %v", err)
		}
	}
}

// gzipAppend appends the gzip compression of src to dst.
func gzipAppend(dst, src []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(buf)
	if _, err := zw.Write(src); err != nil {
		return dst, err
	}
	if err := zw.Close(); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}

// base64Reader decodes a gRPC-Web text body: base64 whose chunks may each
// errBadText is the error of a grpc-web-text body that is not base64: the
// client's fault, answered with INTERNAL.
var errBadText = errors.New("protocol.grpc: malformed grpc-web-text body")

// end with padding, so it decodes one 4-character quantum at a time.
type base64Reader struct {
	r   io.Reader
	in  [1024]byte
	q   [4]byte // the quantum being collected
	nq  int
	out []byte // decoded, not yet read
	buf [768]byte
	err error
}

func (b *base64Reader) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			if b.err == io.EOF && b.nq != 0 {
				return 0, fmt.Errorf("%w: it ends inside a base64 quantum", errBadText)
			}
			return 0, b.err
		}
		n, err := b.r.Read(b.in[:])
		b.err = err
		out := b.buf[:0]
		for _, c := range b.in[:n] {
			switch c {
			case ' ', '\t', '\r', '\n':
				continue
			}
			b.q[b.nq] = c
			b.nq++
			if b.nq == 4 {
				var d [3]byte
				m, err := base64.StdEncoding.Decode(d[:], b.q[:])
				if err != nil {
					b.err = fmt.Errorf("%w: %w", errBadText, err)
					break
				}
				out = append(out, d[:m]...)
				b.nq = 0
			}
		}
		b.out = out
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}
