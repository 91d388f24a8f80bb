package testpb

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Random fills m, which must be empty, with random values: each field (or
// oneof) is set with probability 3/4, lists and maps get 0 to 4 elements,
// and messages nest at most depth levels below m. Values include the edge
// cases of every kind (zero, extremes, negative, NaN, -0, multi-byte UTF-8)
// and are valid for every codec (timestamps and durations in range).
func Random(r *rand.Rand, m proto.Message, depth int) {
	fill(r, m.ProtoReflect(), depth)
}

func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp", "google.protobuf.Duration":
		fillTime(r, m)
		return
	case "google.protobuf.Value":
		fillValue(r, m, depth)
		return
	}
	fields := m.Descriptor().Fields()
	oneofs := m.Descriptor().Oneofs()
	for i := range oneofs.Len() {
		o := oneofs.Get(i)
		if o.IsSynthetic() || r.IntN(4) == 0 {
			continue
		}
		fd := o.Fields().Get(r.IntN(o.Fields().Len()))
		if fd.Message() != nil && depth == 0 {
			continue
		}
		setField(r, m, fd, depth)
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() {
			continue
		}
		if r.IntN(4) == 0 || (fd.Message() != nil && !fd.IsMap() && !fd.IsList() && depth == 0) {
			continue
		}
		setField(r, m, fd, depth)
	}
}

func setField(r *rand.Rand, m protoreflect.Message, fd protoreflect.FieldDescriptor, depth int) {
	switch {
	case fd.IsList():
		if fd.Message() != nil && depth == 0 {
			return
		}
		l := m.Mutable(fd).List()
		for range r.IntN(5) {
			if fd.Message() != nil {
				e := l.NewElement()
				fill(r, e.Message(), depth-1)
				l.Append(e)
			} else {
				l.Append(scalar(r, fd))
			}
		}
	case fd.IsMap():
		if fd.MapValue().Message() != nil && depth == 0 {
			return
		}
		mp := m.Mutable(fd).Map()
		for range r.IntN(5) {
			k := scalar(r, fd.MapKey()).MapKey()
			if fd.MapValue().Message() != nil {
				v := mp.NewValue()
				fill(r, v.Message(), depth-1)
				mp.Set(k, v)
			} else {
				mp.Set(k, scalar(r, fd.MapValue()))
			}
		}
	case fd.Message() != nil:
		fill(r, m.Mutable(fd).Message(), depth-1)
	default:
		m.Set(fd, scalar(r, fd))
	}
}

var (
	floats  = []float64{0, math.Copysign(0, -1), 1, -1.5, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1), math.NaN()}
	strs    = []string{"", "a", "héllo, wörld", "日本語", "emoji 🎉", strings.Repeat("x", 200)}
	widths  = []uint{1, 7, 8, 14, 21, 31, 32, 35, 63, 64}
	enumNum = []protoreflect.EnumNumber{0, 1, 2, -1, 7}
)

// bits returns a random number of up to 64 bits, biased to lengths around
// varint byte boundaries.
func bits(r *rand.Rand) uint64 {
	w := widths[r.IntN(len(widths))]
	if w == 64 {
		return r.Uint64()
	}
	return r.Uint64() & (1<<w - 1)
}

func scalar(r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	neg := r.IntN(3) == 0
	signed := func() int64 {
		v := int64(bits(r))
		if neg {
			return -v
		}
		return v
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 1)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(enumNum[r.IntN(len(enumNum))])
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(signed()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(signed())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(bits(r)))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(bits(r))
	case protoreflect.FloatKind:
		f := floats[r.IntN(len(floats))]
		if f == math.MaxFloat64 {
			f = math.MaxFloat32
		}
		if f == math.SmallestNonzeroFloat64 {
			f = math.SmallestNonzeroFloat32
		}
		return protoreflect.ValueOfFloat32(float32(f))
	case protoreflect.DoubleKind:
		if r.IntN(2) == 0 {
			return protoreflect.ValueOfFloat64(r.NormFloat64() * 1e6)
		}
		return protoreflect.ValueOfFloat64(floats[r.IntN(len(floats))])
	case protoreflect.StringKind:
		if r.IntN(2) == 0 {
			return protoreflect.ValueOfString(fmt.Sprintf("s%d", r.IntN(1000)))
		}
		return protoreflect.ValueOfString(strs[r.IntN(len(strs))])
	case protoreflect.BytesKind:
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	}
	panic("testpb: unhandled kind " + fd.Kind().String())
}

// fillTime sets seconds and nanos within what the JSON mapping accepts
// (years 1 to 9999; durations of up to 10000 years, nanos of the seconds'
// sign), or leaves them zero.
func fillTime(r *rand.Rand, m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	var s int64
	var n int32
	switch {
	case r.IntN(3) == 0: // zero
	case m.Descriptor().FullName() == "google.protobuf.Duration":
		const maxSecs = 315_576_000_000
		s, n = r.Int64N(2*maxSecs+1)-maxSecs, int32(r.IntN(1e9))
		if s < 0 || (s == 0 && r.IntN(2) == 0) {
			n = -n
		}
	default:
		const minSecs, maxSecs = -62_135_596_800, 253_402_300_799
		s, n = minSecs+r.Int64N(maxSecs-minSecs+1), int32(r.IntN(1e9))
	}
	m.Set(fields.ByName("seconds"), protoreflect.ValueOfInt64(s))
	m.Set(fields.ByName("nanos"), protoreflect.ValueOfInt32(n))
}

// fillValue sets one kind of a google.protobuf.Value (JSON rejects an
// unset one, and a NaN or infinite number).
func fillValue(r *rand.Rand, m protoreflect.Message, depth int) {
	kind := m.Descriptor().Oneofs().ByName("kind").Fields()
	var fd protoreflect.FieldDescriptor
	for {
		fd = kind.Get(r.IntN(kind.Len()))
		if fd.Message() == nil || depth > 0 {
			break
		}
	}
	switch fd.Name() {
	case "null_value":
		m.Set(fd, protoreflect.ValueOfEnum(0))
	case "number_value":
		m.Set(fd, protoreflect.ValueOfFloat64(float64(r.IntN(1e6))/8))
	case "string_value":
		m.Set(fd, protoreflect.ValueOfString(strs[r.IntN(len(strs))]))
	case "bool_value":
		m.Set(fd, protoreflect.ValueOfBool(r.IntN(2) == 1))
	case "struct_value":
		st := m.Mutable(fd).Message()
		mp := st.Mutable(st.Descriptor().Fields().ByName("fields")).Map()
		for range r.IntN(3) {
			v := mp.NewValue()
			fillValue(r, v.Message(), depth-1)
			mp.Set(protoreflect.ValueOfString(fmt.Sprintf("k%d", r.IntN(100))).MapKey(), v)
		}
	case "list_value":
		lv := m.Mutable(fd).Message()
		l := lv.Mutable(lv.Descriptor().Fields().ByName("values")).List()
		for range r.IntN(3) {
			e := l.NewElement()
			fillValue(r, e.Message(), depth-1)
			l.Append(e)
		}
	}
}

// Order returns the benchmark's order event: 40 items and 8 tags, about
// 1.2 KB in the proto encoding.
func Order() *OrderEvent {
	o := &OrderEvent{
		Id:   734_112,
		Time: &timestamppb.Timestamp{Seconds: 1_767_225_600, Nanos: 123_456_789},
		User: "customer-4f1c9a2e@example.com",
		Tags: map[string]string{},
	}
	for i := range 40 {
		o.Items = append(o.Items, &LineItem{
			Sku:      4_000_000_000 + int64(i)*7_919,
			Quantity: int32(1 + i%12),
			Price:    float64(199+i*37) / 100,
		})
	}
	for i, k := range []string{"channel", "region", "campaign", "device", "currency", "warehouse", "priority", "coupon"} {
		o.Tags[k] = fmt.Sprintf("%s-value-%d-abcdefghijklmnopqrst", k, i)
	}
	return o
}
