// Command codecbench compares the binary codec with the proto codec (and
// JSON, for reference) on the benchmark messages, in one process:
// every round runs each codec once, in turn, so that a change in the
// machine's load affects them alike. It prints the median of the rounds and
// the ratio of proto's time to each codec's.
//
//	go run ./plugins/codec-binary/internal/codecbench [-rounds 5] [-benchtime 1s]
//
// Each message is measured in two ways:
//
//   - reuse: marshal into a reused buffer, then unmarshal into a reused
//     message (which the codec resets first). This is the codec's own work,
//     what the issue calls "marshal plus unmarshal".
//   - new: the same, but unmarshal into a message allocated for the
//     purpose, as a server does for each request. The allocation is the
//     caller's, not the codec's, and costs every codec the same.
//
// For the "new" way it also prints a floor: binary's marshal,
// then the allocations that any codec bound by kernel.Codec's contract
// makes (the message, and a copy of its string, since Unmarshal must not
// retain its input), with no decoding at all. No codec's time can go below
// it, so its ratio bounds what any codec can reach against proto there.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	binary "github.com/axonrpc/axon/plugins/codec-binary"
	"github.com/axonrpc/axon/plugins/codec-binary/internal/testpb"
	jsoncodec "github.com/axonrpc/axon/plugins/codec-json"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
)

// message is one benchmark message: a value to encode, a way to allocate
// an empty one, and the floor of allocating a decoded copy.
type message struct {
	name   string
	msg    proto.Message
	newMsg func() proto.Message
	// floor allocates the least that decoding enc, the message's binary
	// encoding, needs, filled by copying rather than decoding.
	floor func(enc []byte) any
}

func messages() []message {
	order := testpb.Order()
	say := &echopb.SayRequest{Text: "hello, axon"}
	return []message{
		{name: "order", msg: order, newMsg: func() proto.Message { return new(testpb.OrderEvent) },
			floor: func([]byte) any { return orderFloor(order) }},
		{name: "echo", msg: say, newMsg: func() proto.Message { return new(echopb.SayRequest) },
			floor: func(enc []byte) any {
				m := new(echopb.SayRequest)
				m.Text = string(enc[2:]) // after the bitmap and the length
				return m
			}},
	}
}

func main() {
	rounds := flag.Int("rounds", 5, "rounds; each runs every benchmark once")
	benchtime := flag.Duration("benchtime", time.Second, "time per benchmark run")
	withJSON := flag.Bool("json", false, "measure the JSON codec too")
	flag.Parse()
	testing.Init()
	if err := flag.Set("test.benchtime", benchtime.String()); err != nil {
		fmt.Fprintln(os.Stderr, "codecbench:", err)
		os.Exit(2)
	}

	l := kernel.DefaultLimits()
	codecs := []kernel.Codec{binary.New(l), protocodec.Codec{MaxDepth: l.MaxDecodeDepth}, plainProto{}}
	if *withJSON {
		codecs = append(codecs, jsoncodec.New(l))
	}
	type key struct{ msg, codec, mode string }
	results := map[key][]testing.BenchmarkResult{}
	sizes := map[key]int{}
	// Round 0 warms up (the first benchmarks of a process run slow) and is
	// not counted.
	for r := range *rounds + 1 {
		fmt.Fprintf(os.Stderr, "round %d/%d\n", r, *rounds)
		for _, m := range messages() {
			for _, c := range codecs {
				enc, err := c.Marshal(nil, m.msg)
				if err != nil {
					fmt.Fprintf(os.Stderr, "codecbench: %s: marshal %s: %v\n", c.Name(), m.name, err)
					os.Exit(1)
				}
				sizes[key{m.name, c.Name(), ""}] = len(enc)
				for _, mode := range []string{"reuse", "new"} {
					k := key{m.name, c.Name(), mode}
					res := run(k.msg+"/"+k.codec+"/"+k.mode, roundTrip(c, m, mode == "new", len(enc)))
					if r > 0 {
						results[k] = append(results[k], res)
					}
				}
			}
			if m.floor != nil {
				k := key{m.name, "floor", "new"}
				res := run(m.name+"/floor", func(b *testing.B) {
					bin := codecs[0]
					buf := make([]byte, 0, 4096)
					b.ReportAllocs()
					for b.Loop() {
						p, err := bin.Marshal(buf[:0], m.msg)
						if err != nil {
							b.Fatal(err)
						}
						runtime.KeepAlive(m.floor(p))
					}
				})
				if r > 0 {
					results[k] = append(results[k], res)
				}
			}
		}
	}

	fmt.Printf("median of %d rounds, %s each; a ratio is the peer's ns/op ÷ this row's (higher is faster):\n", *rounds, *benchtime)
	fmt.Printf("÷proto against the proto codec, ÷proto.Marshal against proto.Marshal+proto.Unmarshal\n\n")
	fmt.Printf("%-6s %-5s %-13s %10s %8s %10s %7s %7s %14s\n", "msg", "mode", "codec", "ns/op", "allocs", "B/op", "bytes", "÷proto", "÷proto.Marshal")
	for _, m := range messages() {
		for _, mode := range []string{"reuse", "new"} {
			base := median(results[key{m.name, "proto", mode}])
			plain := median(results[key{m.name, plainProto{}.Name(), mode}])
			names := []string{}
			for _, c := range codecs {
				names = append(names, c.Name())
			}
			if m.floor != nil && mode == "new" {
				names = append(names, "floor")
			}
			for _, name := range names {
				rs := results[key{m.name, name, mode}]
				med := median(rs)
				size := "-"
				if n, ok := sizes[key{m.name, name, ""}]; ok {
					size = fmt.Sprint(n)
				}
				fmt.Printf("%-6s %-5s %-13s %10.1f %8d %10d %7s %6.2fx %13.2fx\n", m.name, mode, name, med,
					rs[0].AllocsPerOp(), rs[0].AllocedBytesPerOp(), size, base/med, plain/med)
			}
		}
	}
	fmt.Println()
	fmt.Println("floor: binary's marshal, then the least allocation a decoded copy needs (the message, its")
	fmt.Println("nested messages, slices and map, one block for its strings) filled by copying, not decoding;")
	fmt.Println("its ratio bounds what any codec that fills protoc-gen-go's structs and does not retain its")
	fmt.Println("input (kernel.Codec's contract) can reach in the new mode.")
}

// orderFloor allocates the least that decoding o needs, copying o's
// values instead of decoding them: the message, its timestamp, the items in
// one slice and the slice of pointers to them, the map, and one block for
// the copies of all the strings.
func orderFloor(o *testpb.OrderEvent) *testpb.OrderEvent {
	n := len(o.User)
	for k, v := range o.Tags {
		n += len(k) + len(v)
	}
	block := make([]byte, 0, n)
	clone := func(s string) string {
		i := len(block)
		block = append(block, s...)
		return unsafe.String(&block[i], len(s))
	}
	m := new(testpb.OrderEvent)
	m.Id = o.Id
	m.Time = &timestamppb.Timestamp{Seconds: o.Time.Seconds, Nanos: o.Time.Nanos}
	m.User = clone(o.User)
	s := make([]testpb.LineItem, len(o.Items))
	m.Items = make([]*testpb.LineItem, len(o.Items))
	for i, it := range o.Items {
		s[i].Sku, s[i].Quantity, s[i].Price = it.Sku, it.Quantity, it.Price
		m.Items[i] = &s[i]
	}
	m.Tags = make(map[string]string, len(o.Tags))
	for k, v := range o.Tags {
		m.Tags[clone(k)] = clone(v)
	}
	return m
}

// roundTrip returns a benchmark of c marshalling m into a reused buffer and
// unmarshalling the result, into a new message for each operation when
// fresh is set, else into one reused message.
func roundTrip(c kernel.Codec, m message, fresh bool, size int) func(*testing.B) {
	return func(b *testing.B) {
		buf := make([]byte, 0, 2*size)
		out := m.newMsg()
		b.ReportAllocs()
		for b.Loop() {
			p, err := c.Marshal(buf[:0], m.msg)
			if err != nil {
				b.Fatal(err)
			}
			if fresh {
				out = m.newMsg()
			}
			if err := c.Unmarshal(p, out); err != nil {
				b.Fatal(err)
			}
		}
		runtime.KeepAlive(out)
	}
}

// plainProto is proto.Marshal and proto.Unmarshal themselves, as a
// baseline: unlike the proto codec, which appends to the caller's
// buffer, proto.Marshal allocates the encoding every time.
type plainProto struct{}

func (plainProto) Name() string { return "proto.Marshal" }

func (plainProto) Marshal(_ []byte, v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }

func (plainProto) Unmarshal(src []byte, v any) error { return proto.Unmarshal(src, v.(proto.Message)) }

// run runs the benchmark f and exits if it failed (testing.Benchmark
// then returns no iterations).
func run(name string, f func(*testing.B)) testing.BenchmarkResult {
	r := testing.Benchmark(f)
	if r.N == 0 {
		fmt.Fprintf(os.Stderr, "codecbench: %s failed\n", name)
		os.Exit(1)
	}
	return r
}

// median returns the median ns/op of rs.
func median(rs []testing.BenchmarkResult) float64 {
	ns := make([]float64, len(rs))
	for i, r := range rs {
		ns[i] = float64(r.T.Nanoseconds()) / float64(r.N)
	}
	slices.Sort(ns)
	return ns[len(ns)/2]
}
