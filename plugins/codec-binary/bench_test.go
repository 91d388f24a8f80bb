package binary_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/plugins/codec-binary/internal/testpb"
)

// benchMessages are the codec's benchmark messages: the order event (about
// 1.2 KB) and the small echo message, plus a 1 KiB echo (the payload of
// bench/'s echo benchmark). newMsg allocates an empty message of msg's type the
// way the kernel's dispatcher and generated clients do (new(T)), not
// through protoreflect, whose MessageType.New costs more than decoding
// the small message.
func benchMessages() []struct {
	name   string
	msg    proto.Message
	newMsg func() proto.Message
} {
	newSay := func() proto.Message { return new(echopb.SayRequest) }
	return []struct {
		name   string
		msg    proto.Message
		newMsg func() proto.Message
	}{
		{"order", testpb.Order(), func() proto.Message { return new(testpb.OrderEvent) }},
		{"echo", &echopb.SayRequest{Text: "hello, axon"}, newSay},
		{"echo1k", &echopb.SayRequest{Text: strings.Repeat("x", 1024)}, newSay},
	}
}

// BenchmarkCodecs measures every codec on every benchmark message:
//
//	go test ./plugins/codec-binary -run '^$' -bench Codecs -benchmem
//
// The "bytes" metric is the encoded size; roundtrip is a marshal into a
// reused buffer and an unmarshal into a new message (the issue's "marshal
// plus unmarshal"). "cpu-ns/op" is the CPU
// time of the whole process per operation, garbage collection included: on
// a shared machine it varies much less than ns/op, which is wall time.
func BenchmarkCodecs(b *testing.B) {
	for _, m := range benchMessages() {
		for _, c := range codecs() {
			enc, err := c.Marshal(nil, m.msg)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(m.name+"/"+c.Name()+"/marshal", func(b *testing.B) {
				buf := make([]byte, 0, 2*len(enc))
				b.ReportAllocs()
				b.SetBytes(int64(len(enc)))
				start := cpuTime()
				for b.Loop() {
					if _, err := c.Marshal(buf[:0], m.msg); err != nil {
						b.Fatal(err)
					}
				}
				report(b, start, len(enc))
			})
			b.Run(m.name+"/"+c.Name()+"/roundtrip", func(b *testing.B) {
				buf := make([]byte, 0, 2*len(enc))
				b.ReportAllocs()
				start := cpuTime()
				for b.Loop() {
					out, err := c.Marshal(buf[:0], m.msg)
					if err != nil {
						b.Fatal(err)
					}
					if err := c.Unmarshal(out, m.newMsg()); err != nil {
						b.Fatal(err)
					}
				}
				report(b, start, len(enc))
			})
			b.Run(m.name+"/"+c.Name()+"/unmarshal", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(enc)))
				start := cpuTime()
				for b.Loop() {
					if err := c.Unmarshal(enc, m.newMsg()); err != nil {
						b.Fatal(err)
					}
				}
				report(b, start, len(enc))
			})
		}
	}
}

// report adds the encoded size and the CPU time per operation since start.
func report(b *testing.B, start time.Duration, size int) {
	b.ReportMetric(float64(size), "bytes")
	if cpu := cpuTime(); cpu > 0 && b.N > 0 {
		b.ReportMetric(float64(cpu-start)/float64(b.N), "cpu-ns/op")
	}
}
