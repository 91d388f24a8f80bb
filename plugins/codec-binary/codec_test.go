package binary_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/status"
	binary "github.com/axonrpc/axon/plugins/codec-binary"
	"github.com/axonrpc/axon/plugins/codec-binary/internal/testpb"
	"github.com/axonrpc/axon/plugins/codec-binary/wire"
	jsoncodec "github.com/axonrpc/axon/plugins/codec-json"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
)

// codecs are every codec Axon ships; every test message must round-trip
// through each of them.
func codecs() []kernel.Codec {
	l := kernel.DefaultLimits()
	return []kernel.Codec{binary.New(l), protocodec.Codec{MaxDepth: l.MaxDecodeDepth}, jsoncodec.New(l)}
}

func roundTrip(t *testing.T, c kernel.Codec, in proto.Message) proto.Message {
	t.Helper()
	// A non-empty dst proves Marshal appends.
	out, err := c.Marshal([]byte("prefix"), in)
	if err != nil {
		t.Fatalf("%s: marshal: %v", c.Name(), err)
	}
	if !strings.HasPrefix(string(out), "prefix") {
		t.Fatalf("%s: marshal did not append to dst", c.Name())
	}
	got := in.ProtoReflect().Type().New().Interface()
	if err := c.Unmarshal(out[len("prefix"):], got); err != nil {
		t.Fatalf("%s: unmarshal: %v", c.Name(), err)
	}
	if !proto.Equal(in, got) {
		t.Fatalf("%s: round trip changed the message\n in: %v\nout: %v", c.Name(), in, got)
	}
	return got
}

// TestRandomRoundTrip sends random messages with every field kind through
// every codec, and checks that the binary and the proto codec decode to
// equal messages.
func TestRandomRoundTrip(t *testing.T) {
	n := 400
	if testing.Short() {
		n = 50
	}
	cs := codecs()
	for seed := range uint64(n) {
		in := new(testpb.All)
		testpb.Random(rand.New(rand.NewPCG(seed, 1)), in, 3)
		got := map[string]proto.Message{}
		for _, c := range cs {
			got[c.Name()] = roundTrip(t, c, in)
		}
		if !proto.Equal(got["binary"], got["proto"]) {
			t.Fatalf("seed %d: binary and proto decode differently\nbinary: %v\n proto: %v", seed, got["binary"], got["proto"])
		}
		// Every ownership mode decodes the same.
		b := wire.Marshal(nil, in)
		for _, mode := range []wire.Strings{wire.Arena, wire.Copy, wire.Alias} {
			out := new(testpb.All)
			if err := wire.Unmarshal(b, out, wire.Options{Strings: mode}); err != nil {
				t.Fatalf("seed %d, mode %d: %v", seed, mode, err)
			}
			if !proto.Equal(in, out) {
				t.Fatalf("seed %d, mode %d: round trip changed the message", seed, mode)
			}
		}
	}
}

// full returns an All with every field set, including explicitly present
// zero values.
func full() *testpb.All {
	sc := &testpb.Scalars{
		FDouble: -2.5, FFloat: 1.25, FInt32: -7, FInt64: -1 << 40, FUint32: math.MaxUint32, FUint64: math.MaxUint64,
		FSint32: math.MinInt32, FSint64: math.MinInt64, FFixed32: 0xdeadbeef, FFixed64: 1 << 63, FSfixed32: -1, FSfixed64: math.MaxInt64,
		FBool: true, FString: "héllo", FBytes: []byte{0, 1, 2, 255}, FEnum: testpb.Color_COLOR_NEGATIVE,
	}
	ts := &timestamppb.Timestamp{Seconds: -62135596800, Nanos: 999_999_999}
	du := &durationpb.Duration{Seconds: -5, Nanos: -500}
	st, _ := structpb.NewStruct(map[string]any{"a": 1.5, "b": []any{"x", true, nil}})
	return &testpb.All{
		Scalars:    sc,
		ODouble:    proto.Float64(0),
		OFloat:     proto.Float32(0),
		OInt32:     proto.Int32(0),
		OInt64:     proto.Int64(0),
		OUint32:    proto.Uint32(0),
		OUint64:    proto.Uint64(0),
		OSint32:    proto.Int32(0),
		OSint64:    proto.Int64(0),
		OFixed32:   proto.Uint32(0),
		OFixed64:   proto.Uint64(0),
		OSfixed32:  proto.Int32(0),
		OSfixed64:  proto.Int64(0),
		OBool:      proto.Bool(false),
		OString:    proto.String(""),
		OBytes:     []byte{},
		OEnum:      testpb.Color_COLOR_UNSPECIFIED.Enum(),
		OMessage:   &testpb.Scalars{},
		RDouble:    []float64{0, math.Inf(-1), math.NaN()},
		RFloat:     []float32{1, -1},
		RInt32:     []int32{0, -1, math.MaxInt32},
		RInt64:     []int64{math.MinInt64, 0},
		RUint32:    []uint32{0, 1 << 31},
		RUint64:    []uint64{math.MaxUint64},
		RSint32:    []int32{-1, 1},
		RSint64:    []int64{-1 << 62},
		RFixed32:   []uint32{7},
		RFixed64:   []uint64{8},
		RSfixed32:  []int32{-9},
		RSfixed64:  []int64{-10},
		RBool:      []bool{true, false, true},
		RString:    []string{"", "a", "日本"},
		RBytes:     [][]byte{{}, {1}},
		REnum:      []testpb.Color{testpb.Color_COLOR_RED, 42},
		RMessage:   []*testpb.Scalars{{}, sc},
		RUnpacked:  []int32{1, -2, 3},
		RTimestamp: []*timestamppb.Timestamp{ts, {}},
		RDuration:  []*durationpb.Duration{du},

		MStringString:     map[string]string{"k": "v", "": ""},
		MInt32Int64:       map[int32]int64{-1: -1},
		MInt64Message:     map[int64]*testpb.Scalars{1: sc, 2: {}},
		MUint32Bytes:      map[uint32][]byte{3: {9}},
		MUint64Enum:       map[uint64]testpb.Color{4: testpb.Color_COLOR_GREEN},
		MSint32Double:     map[int32]float64{-5: 0.5},
		MSint64Float:      map[int64]float32{-6: -0.25},
		MFixed32Bool:      map[uint32]bool{7: true, 8: false},
		MFixed64String:    map[uint64]string{9: "nine"},
		MSfixed32Sfixed64: map[int32]int64{-10: -11},
		MBoolTimestamp:    map[bool]*timestamppb.Timestamp{true: ts},
		MStringDuration:   map[string]*durationpb.Duration{"d": du},

		Choice:    &testpb.All_CMessage{CMessage: sc},
		Other:     &testpb.All_XSint32{XSint32: -3},
		Timestamp: ts,
		Duration:  du,
		Struct:    st,
		Wrapper:   wrapperspb.String("wrapped"),
		RValue:    []*structpb.Value{structpb.NewNumberValue(3), structpb.NewStringValue("s")},
		Child:     &testpb.All{Child: &testpb.All{Empty: &testpb.Empty{}}},
		Empty:     &testpb.Empty{},
		REmpty:    []*testpb.Empty{{}, {}, {}},
		Nested:    &testpb.All_Nested{Note: "n", Inner: &testpb.All_Nested_Inner{Values: []int64{-1, 0, 1}}},
	}
}

// TestEveryFieldKind round-trips a message with every field set, and each
// member of the oneofs, through every codec, and checks that explicit
// presence survives the binary codec.
func TestEveryFieldKind(t *testing.T) {
	sc := &testpb.Scalars{FString: "x"}
	members := []func(*testpb.All){
		func(m *testpb.All) { m.Choice = &testpb.All_CString{CString: ""} },
		func(m *testpb.All) { m.Choice = &testpb.All_CInt64{CInt64: 0} },
		func(m *testpb.All) { m.Choice = &testpb.All_CMessage{CMessage: sc} },
		func(m *testpb.All) { m.Choice = &testpb.All_CBool{CBool: false} },
		func(m *testpb.All) { m.Choice = &testpb.All_CBytes{CBytes: []byte("b")} },
		func(m *testpb.All) { m.Choice = &testpb.All_CEnum{CEnum: testpb.Color_COLOR_RED} },
		func(m *testpb.All) { m.Choice = &testpb.All_CTimestamp{CTimestamp: timestamppb.Now()} },
		func(m *testpb.All) { m.Choice = &testpb.All_CDouble{CDouble: math.Copysign(0, -1)} },
		func(m *testpb.All) { m.Other = &testpb.All_XFixed64{XFixed64: 0} },
		func(m *testpb.All) { m.Choice, m.Other = nil, nil },
	}
	for i, set := range members {
		in := full()
		set(in)
		for _, c := range codecs() {
			roundTrip(t, c, in)
		}
		out := new(testpb.All)
		if err := wire.Unmarshal(wire.Marshal(nil, in), out, wire.Options{}); err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		if out.OInt32 == nil || out.OString == nil || out.OBytes == nil || out.OBool == nil || out.OMessage == nil {
			t.Fatalf("member %d: an explicitly present zero value was lost: %v", i, out)
		}
		if (out.Choice == nil) != (in.Choice == nil) || (out.Other == nil) != (in.Other == nil) {
			t.Fatalf("member %d: a oneof changed presence", i)
		}
	}
	// Nil and empty messages differ on the wire.
	a, b := wire.Marshal(nil, &testpb.All{}), wire.Marshal(nil, &testpb.All{Empty: &testpb.Empty{}})
	if string(a) == string(b) {
		t.Fatal("a nil and an empty nested message encode alike")
	}
}

// TestSizeNoLargerThanProto compares whole encodings (the encoding carries
// no fingerprint). The bitmap costs one bit per field where proto costs a
// tag byte per set field, so only a message with very few of many fields
// set is larger.
func TestSizeNoLargerThanProto(t *testing.T) {
	c := binary.New(kernel.Limits{})
	for _, m := range []proto.Message{testpb.Order(), full(), &echopb.SayRequest{Text: "hello, axon"}} {
		b, err := c.Marshal(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		if p := proto.Size(m); len(b) > p {
			t.Errorf("%s: binary is %d bytes, proto %d", m.ProtoReflect().Descriptor().FullName(), len(b), p)
		}
	}
}

func TestMarshalAllocatesNothing(t *testing.T) {
	c := binary.New(kernel.Limits{})
	all := full()
	all.Struct, all.RValue = nil, nil // the proto encoding of their maps allocates
	for _, m := range []proto.Message{testpb.Order(), all, &echopb.SayRequest{Text: "hi"}} {
		buf := make([]byte, 0, 64<<10)
		if n := testing.AllocsPerRun(100, func() {
			if _, err := c.Marshal(buf[:0], m); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: Marshal into a large enough buffer allocates %.0f times", m.ProtoReflect().Descriptor().FullName(), n)
		}
	}
}

func TestNoBinaryMethods(t *testing.T) {
	c := binary.New(kernel.Limits{})
	_, err := c.Marshal(nil, wrapperspb.String("x"))
	if err == nil || !strings.Contains(err.Error(), "*wrapperspb.StringValue has no binary methods") {
		t.Fatalf("marshal: got %v", err)
	}
	err = c.Unmarshal([]byte{0}, struct{}{})
	if err == nil || !strings.Contains(err.Error(), "struct {} has no binary methods") {
		t.Fatalf("unmarshal: got %v", err)
	}
}

func TestMessageLimit(t *testing.T) {
	c := binary.New(kernel.Limits{MaxMessage: 1024})
	b := wire.Marshal(nil, &echopb.SayRequest{Text: strings.Repeat("x", 2000)})
	err := c.Unmarshal(b, new(echopb.SayRequest))
	if status.CodeOf(err) != status.ResourceExhausted {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
	}
}

// TestArenaDoesNotRetainInput checks the codec's ownership contract: the
// caller may reuse its buffer once Unmarshal returns.
func TestArenaDoesNotRetainInput(t *testing.T) {
	c := binary.New(kernel.Limits{})
	in := &testpb.Scalars{FString: "keep me", FBytes: []byte("and me")}
	b, _ := c.Marshal(nil, in)
	out := new(testpb.Scalars)
	if err := c.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'X'
	}
	if out.FString != "keep me" || string(out.FBytes) != "and me" {
		t.Fatalf("decoded fields changed with the input: %q %q", out.FString, out.FBytes)
	}
	// Appending to a decoded bytes field must not overwrite what follows
	// it in the arena.
	out.FBytes = append(out.FBytes, "!!!!!!!!"...)
	if out.FString != "keep me" {
		t.Fatalf("appending to a bytes field changed a string: %q", out.FString)
	}
}

func TestDepthLimit(t *testing.T) {
	deep := func(n int) *testpb.Node {
		var m *testpb.Node
		for i := range n {
			m = &testpb.Node{Next: m, Value: int32(i)}
		}
		return m
	}
	c := binary.New(kernel.Limits{MaxDecodeDepth: 10})
	for _, tc := range []struct {
		depth int
		ok    bool
	}{{10, true}, {11, false}, {5000, false}} {
		b, _ := c.Marshal(nil, deep(tc.depth))
		err := c.Unmarshal(b, new(testpb.Node))
		if (err == nil) != tc.ok {
			t.Fatalf("depth %d: got %v", tc.depth, err)
		}
		var de *wire.DecodeError
		if !tc.ok && (!errors.As(err, &de) || !strings.Contains(err.Error(), "nested deeper than the limit")) {
			t.Fatalf("depth %d: got %v, want a nesting error", tc.depth, err)
		}
	}
}
