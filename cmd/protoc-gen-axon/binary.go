package main

import (
	"fmt"
	"slices"
	"strconv"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/gofeaturespb"
)

const (
	wirePackage = protogen.GoImportPath("github.com/axonrpc/axon/plugins/codec-binary/wire")
	mathPackage = protogen.GoImportPath("math")
)

// encoding is how the binary codec writes values of a message type.
type encoding int

const (
	encAxon      encoding = iota // generated methods
	encTimestamp                 // google.protobuf.Timestamp, inline
	encDuration                  // google.protobuf.Duration, inline
	encProto                     // no generated methods: length-prefixed proto
)

func (e encoding) String() string {
	return [...]string{"axon", "timestamp", "duration", "proto"}[e]
}

// encodingOf says how values of message type m are encoded. Messages of
// proto3 files with the open Go API get generated methods (the generator
// must run on their files too); other well-known types and messages of
// other syntaxes are carried in the proto encoding.
func encodingOf(m *protogen.Message) encoding {
	switch m.Desc.FullName() {
	case "google.protobuf.Timestamp":
		return encTimestamp
	case "google.protobuf.Duration":
		return encDuration
	}
	if hasBinary(m) {
		return encAxon
	}
	return encProto
}

// hasBinary reports whether m's Go type gets binary methods.
func hasBinary(m *protogen.Message) bool {
	f := m.Desc.ParentFile()
	return f.Syntax() == protoreflect.Proto3 && f.Package() != "google.protobuf" &&
		!m.Desc.IsMapEntry() && m.APILevel != gofeaturespb.GoFeatures_API_OPAQUE
}

// binaryMessages returns the messages of f, nested ones included, that get
// binary methods.
func binaryMessages(f *protogen.File) []*protogen.Message {
	var out []*protogen.Message
	var walk func([]*protogen.Message)
	walk = func(ms []*protogen.Message) {
		for _, m := range ms {
			if hasBinary(m) {
				out = append(out, m)
			}
			walk(m.Messages)
		}
	}
	walk(f.Messages)
	return out
}

func byNumber(fs []*protogen.Field) []*protogen.Field {
	out := slices.Clone(fs)
	slices.SortFunc(out, func(a, b *protogen.Field) int { return int(a.Desc.Number()) - int(b.Desc.Number()) })
	return out
}

func isRealOneof(f *protogen.Field) bool { return f.Oneof != nil && !f.Oneof.Desc.IsSynthetic() }

// slot is one bit of a message's presence bitmap: a field, or a oneof.
type slot struct {
	field *protogen.Field
	oneof *protogen.Oneof
	byte  int    // index of the bitmap byte
	mask  string // the bit, as a Go constant
}

// slotsOf returns m's presence slots in field-number order; a oneof takes
// the place of its lowest-numbered member.
func slotsOf(m *protogen.Message) []slot {
	var out []slot
	seen := map[*protogen.Oneof]bool{}
	for _, f := range byNumber(m.Fields) {
		s := slot{field: f}
		if isRealOneof(f) {
			if seen[f.Oneof] {
				continue
			}
			seen[f.Oneof] = true
			s = slot{oneof: f.Oneof}
		}
		i := len(out)
		s.byte, s.mask = i/8, fmt.Sprintf("0x%02x", 1<<(i%8))
		out = append(out, s)
	}
	return out
}

// gen holds what generating one message's methods needs.
type gen struct {
	g    *protogen.GeneratedFile
	wire func(name string) string // qualified wire identifier
}

func genBinary(g *protogen.GeneratedFile, m *protogen.Message, fps *fingerprinter) error {
	x := gen{g: g, wire: func(name string) string { return g.QualifiedGoIdent(wirePackage.Ident(name)) }}
	for _, f := range m.Fields {
		if f.Desc.Kind() == protoreflect.GroupKind {
			return fmt.Errorf("protoc-gen-axon: %s: groups are not supported", f.Desc.FullName())
		}
	}
	typ := g.QualifiedGoIdent(m.GoIdent)
	full := string(m.Desc.FullName())
	slots := slotsOf(m)
	nbytes := max(1, (len(slots)+7)/8)
	zeros := "0"
	for range nbytes - 1 {
		zeros += ", 0"
	}

	g.P("var _ ", x.wire("Message"), " = (*", typ, ")(nil)")
	g.P()
	g.P("// AxonFingerprint returns the schema fingerprint of ", full, ".")
	g.P("func (*", typ, ") AxonFingerprint() uint64 { return ", fmt.Sprintf("0x%016x", fps.fingerprint(m)), " }")
	g.P()

	// Encode.
	g.P("// AxonAppend appends the binary encoding of m, without fingerprint, to b.")
	if len(slots) == 0 {
		g.P("func (*", typ, ") AxonAppend(b []byte) []byte { return append(b, 0) }")
		g.P()
	} else {
		g.P("func (m *", typ, ") AxonAppend(b []byte) []byte {")
		g.P("if m == nil {")
		g.P("return append(b, ", zeros, ")")
		g.P("}")
		g.P("i := len(b)")
		g.P("b = append(b, ", zeros, ")")
		g.P("var ", bitsVars(nbytes), " byte")
		for _, s := range slots {
			x.encodeSlot(s)
		}
		for i := range nbytes {
			if i == 0 {
				g.P("b[i] = p0")
			} else {
				g.P("b[i+", i, "] = p", i)
			}
		}
		g.P("return b")
		g.P("}")
		g.P()
	}

	// Decode. The Decoder is a local of AxonUnmarshal, which calls only
	// concrete methods with it, so it stays on the stack.
	g.P("// AxonUnmarshal replaces m with the ", m.GoIdent.GoName, " that src encodes; see ", x.wire("Unmarshal"), ".")
	g.P("func (m *", typ, ") AxonUnmarshal(src []byte, o ", x.wire("Options"), ") error {")
	g.P("*m = ", typ, "{}")
	g.P("var d ", x.wire("Decoder"))
	g.P("d.Begin(src, o)")
	g.P("m.AxonDecode(&d)")
	g.P("return d.End(", strquote(full), ")")
	g.P("}")
	g.P()
	g.P("// AxonDecode decodes the binary encoding of a ", m.GoIdent.GoName, " from d into m, which")
	g.P("// must be empty (new or Reset).")
	g.P("func (m *", typ, ") AxonDecode(d *", x.wire("Decoder"), ") error {")
	g.P("if !d.Enter() {")
	g.P("return d.Leave(", strquote(full), ")")
	g.P("}")
	if len(slots) == 0 {
		g.P("if d.Byte() != 0 {")
		g.P("d.Invalid(", strquote("presence bits for fields that "+full+" does not have"), ")")
		g.P("}")
	} else {
		for i := range nbytes {
			g.P("p", i, " := d.Byte()")
		}
		if used := len(slots) - 8*(nbytes-1); used < 8 {
			g.P("if p", nbytes-1, fmt.Sprintf("&^0x%02x", 1<<used-1), " != 0 {")
			g.P("d.Invalid(", strquote("presence bits for fields that "+full+" does not have"), ")")
			g.P("}")
		}
		for _, s := range slots {
			x.decodeSlot(s)
		}
	}
	g.P("return d.Leave(", strquote(full), ")")
	g.P("}")
	g.P()
	return nil
}

func bitsVars(n int) string {
	s := "p0"
	for i := 1; i < n; i++ {
		s += ", p" + strconv.Itoa(i)
	}
	return s
}

func (s slot) set() string  { return fmt.Sprintf("p%d |= %s", s.byte, s.mask) }
func (s slot) test() string { return fmt.Sprintf("p%d&%s != 0", s.byte, s.mask) }

// encodeSlot writes the statements that append slot s of m and set its bit.
func (x gen) encodeSlot(s slot) {
	g := x.g
	if s.oneof != nil {
		g.P("switch x := m.", s.oneof.GoName, ".(type) {")
		for i, f := range byNumber(s.oneof.Fields) {
			g.P("case *", g.QualifiedGoIdent(f.GoIdent), ":")
			g.P(s.set())
			if i+1 < 0x80 {
				g.P("b = append(b, ", i+1, ")") // a one-byte varint
			} else {
				g.P("b = ", x.wire("AppendUvarint"), "(b, ", i+1, ")")
			}
			g.P(x.appendValue(f, "x."+f.GoName))
		}
		g.P("}")
		return
	}
	f := s.field
	v := "m." + f.GoName
	switch {
	case f.Desc.IsMap():
		k, e := f.Message.Fields[0], f.Message.Fields[1]
		g.P("if len(", v, ") != 0 {")
		g.P(s.set())
		g.P("b = ", x.wire("AppendUvarint"), "(b, uint64(len(", v, ")))")
		g.P("for k, v := range ", v, " {")
		g.P(x.appendValue(k, "k"))
		g.P(x.appendValue(e, "v"))
		g.P("}")
		g.P("}")
	case f.Desc.IsList():
		g.P("if len(", v, ") != 0 {")
		g.P(s.set())
		g.P("b = ", x.wire("AppendUvarint"), "(b, uint64(len(", v, ")))")
		g.P("for _, v := range ", v, " {")
		g.P(x.appendValue(f, "v"))
		g.P("}")
		g.P("}")
	case f.Message != nil:
		g.P("if ", v, " != nil {")
		g.P(s.set())
		g.P(x.appendValue(f, v))
		g.P("}")
	case f.Desc.HasPresence(): // proto3 optional: a pointer, or nil-able bytes
		g.P("if ", v, " != nil {")
		g.P(s.set())
		if f.Desc.Kind() == protoreflect.BytesKind {
			g.P(x.appendValue(f, v))
		} else {
			g.P(x.appendValue(f, "*"+v))
		}
		g.P("}")
	case f.Desc.Kind() == protoreflect.BoolKind: // the bit is the value
		g.P("if ", v, " {")
		g.P(s.set())
		g.P("}")
	default:
		g.P("if ", x.nonZero(f, v), " {")
		g.P(s.set())
		g.P(x.appendValue(f, v))
		g.P("}")
	}
}

// nonZero is the condition under which an implicit-presence scalar is sent,
// the same as proto3's.
func (x gen) nonZero(f *protogen.Field, v string) string {
	switch f.Desc.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind:
		return "len(" + v + ") != 0"
	case protoreflect.FloatKind:
		return x.g.QualifiedGoIdent(mathPackage.Ident("Float32bits")) + "(" + v + ") != 0"
	case protoreflect.DoubleKind:
		return x.g.QualifiedGoIdent(mathPackage.Ident("Float64bits")) + "(" + v + ") != 0"
	}
	return v + " != 0"
}

// appendValue returns the statement appending v, one value of f's type.
func (x gen) appendValue(f *protogen.Field, v string) string {
	w := x.wire
	switch f.Desc.Kind() {
	case protoreflect.BoolKind:
		return "b = " + w("AppendBool") + "(b, " + v + ")"
	case protoreflect.Int32Kind, protoreflect.EnumKind:
		return "b = " + w("AppendUvarint") + "(b, uint64(uint32(" + v + ")))"
	case protoreflect.Uint32Kind, protoreflect.Int64Kind:
		return "b = " + w("AppendUvarint") + "(b, uint64(" + v + "))"
	case protoreflect.Uint64Kind:
		return "b = " + w("AppendUvarint") + "(b, " + v + ")"
	case protoreflect.Sint32Kind:
		return "b = " + w("AppendZigzag") + "(b, int64(" + v + "))"
	case protoreflect.Sint64Kind:
		return "b = " + w("AppendZigzag") + "(b, " + v + ")"
	case protoreflect.Fixed32Kind:
		return "b = " + w("AppendFixed32") + "(b, " + v + ")"
	case protoreflect.Sfixed32Kind:
		return "b = " + w("AppendFixed32") + "(b, uint32(" + v + "))"
	case protoreflect.Fixed64Kind:
		return "b = " + w("AppendFixed64") + "(b, " + v + ")"
	case protoreflect.Sfixed64Kind:
		return "b = " + w("AppendFixed64") + "(b, uint64(" + v + "))"
	case protoreflect.FloatKind:
		return "b = " + w("AppendFloat") + "(b, " + v + ")"
	case protoreflect.DoubleKind:
		return "b = " + w("AppendDouble") + "(b, " + v + ")"
	case protoreflect.StringKind:
		return "b = " + w("AppendString") + "(b, " + v + ")"
	case protoreflect.BytesKind:
		return "b = " + w("AppendBytes") + "(b, " + v + ")"
	}
	switch encodingOf(f.Message) {
	case encTimestamp:
		return "b = " + w("AppendTimestamp") + "(b, " + v + ")"
	case encDuration:
		return "b = " + w("AppendDuration") + "(b, " + v + ")"
	case encProto:
		return "b = " + w("AppendProto") + "(b, " + v + ")"
	}
	return "b = " + v + ".AxonAppend(b)"
}

// decodeSlot writes the statements that decode slot s of m when its bit is
// set.
func (x gen) decodeSlot(s slot) {
	g := x.g
	g.P("if ", s.test(), " {")
	defer g.P("}")
	if s.oneof != nil {
		members := byNumber(s.oneof.Fields)
		g.P("switch d.OneofCase(", strquote(string(s.oneof.Desc.Name())), ", ", len(members), ") {")
		for i, f := range members {
			g.P("case ", i+1, ":")
			x.decodeValue(f, func(e string) string {
				return "m." + s.oneof.GoName + " = &" + g.QualifiedGoIdent(f.GoIdent) + "{" + f.GoName + ": " + e + "}"
			})
		}
		g.P("}")
		return
	}
	f := s.field
	v := "m." + f.GoName
	switch {
	case f.Desc.IsMap():
		k, e := f.Message.Fields[0], f.Message.Fields[1]
		g.P("n := d.Count(", minSize(k)+minSize(e), ")")
		g.P("mm := make(map[", x.goType(k), "]", x.goType(e), ", n)")
		g.P("for range n {")
		x.decodeValue(k, func(e string) string { return "k := " + e })
		x.decodeValue(e, func(e string) string { return "mm[k] = " + e })
		g.P("}")
		g.P(v, " = mm")
	case f.Desc.IsList() && f.Message != nil && encodingOf(f.Message) == encAxon:
		// One allocation for all the elements.
		typ := g.QualifiedGoIdent(f.Message.GoIdent)
		g.P("n := d.Count(", minSize(f), ")")
		g.P("s := make([]", typ, ", n)")
		g.P(v, " = make([]*", typ, ", n)")
		g.P("for i := range s {")
		g.P(v, "[i] = &s[i]")
		g.P("if s[i].AxonDecode(d) != nil {")
		g.P("break")
		g.P("}")
		g.P("}")
	case f.Desc.IsList():
		g.P("n := d.Count(", minSize(f), ")")
		g.P("s := make([]", x.goType(f), ", n)")
		g.P("for i := range s {")
		x.decodeValue(f, func(e string) string { return "s[i] = " + e })
		g.P("}")
		g.P(v, " = s")
	case f.Message != nil:
		x.decodeValue(f, func(e string) string { return v + " = " + e })
	case f.Desc.HasPresence() && f.Desc.Kind() != protoreflect.BytesKind:
		x.decodeValue(f, func(e string) string { return "x := " + e + "\n" + v + " = &x" })
	case f.Desc.Kind() == protoreflect.BoolKind && !f.Desc.HasPresence():
		g.P(v, " = true")
	default:
		x.decodeValue(f, func(e string) string { return v + " = " + e })
	}
}

// decodeValue writes the statements decoding one value of f's type and
// passing it to assign, which returns the statement using it.
func (x gen) decodeValue(f *protogen.Field, assign func(expr string) string) {
	g := x.g
	if f.Message != nil {
		switch encodingOf(f.Message) {
		case encTimestamp:
			g.P(assign("d.Timestamp()"))
		case encDuration:
			g.P(assign("d.Duration()"))
		case encProto:
			g.P("mv := new(", g.QualifiedGoIdent(f.Message.GoIdent), ")")
			g.P("d.Proto(mv)")
			g.P(assign("mv"))
		default:
			g.P("mv := new(", g.QualifiedGoIdent(f.Message.GoIdent), ")")
			g.P("mv.AxonDecode(d)")
			g.P(assign("mv"))
		}
		return
	}
	var e string
	switch f.Desc.Kind() {
	case protoreflect.BoolKind:
		e = "d.Bool()"
	case protoreflect.EnumKind:
		e = g.QualifiedGoIdent(f.Enum.GoIdent) + "(d.Uvarint32())"
	case protoreflect.Int32Kind:
		e = "int32(d.Uvarint32())"
	case protoreflect.Uint32Kind:
		e = "d.Uvarint32()"
	case protoreflect.Int64Kind:
		e = "int64(d.Uvarint())"
	case protoreflect.Uint64Kind:
		e = "d.Uvarint()"
	case protoreflect.Sint32Kind:
		e = "d.Zigzag32()"
	case protoreflect.Sint64Kind:
		e = "d.Zigzag64()"
	case protoreflect.Fixed32Kind:
		e = "d.Fixed32()"
	case protoreflect.Sfixed32Kind:
		e = "int32(d.Fixed32())"
	case protoreflect.Fixed64Kind:
		e = "d.Fixed64()"
	case protoreflect.Sfixed64Kind:
		e = "int64(d.Fixed64())"
	case protoreflect.FloatKind:
		e = "d.Float()"
	case protoreflect.DoubleKind:
		e = "d.Double()"
	case protoreflect.StringKind:
		e = "d.Str()"
	case protoreflect.BytesKind:
		e = "d.Bytes()"
	default:
		panic("protoc-gen-axon: unhandled kind " + f.Desc.Kind().String())
	}
	g.P(assign(e))
}

// goType is the Go type of one value of f (an element, for lists).
func (x gen) goType(f *protogen.Field) string {
	if f.Message != nil {
		return "*" + x.g.QualifiedGoIdent(f.Message.GoIdent)
	}
	if f.Enum != nil {
		return x.g.QualifiedGoIdent(f.Enum.GoIdent)
	}
	switch f.Desc.Kind() {
	case protoreflect.BoolKind:
		return "bool"
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return "int32"
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return "uint32"
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return "int64"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return "uint64"
	case protoreflect.FloatKind:
		return "float32"
	case protoreflect.DoubleKind:
		return "float64"
	case protoreflect.StringKind:
		return "string"
	case protoreflect.BytesKind:
		return "[]byte"
	}
	panic("protoc-gen-axon: unhandled kind " + f.Desc.Kind().String())
}

// minSize is the fewest bytes one value of f's type takes on the wire; the
// decoder checks element counts against it before allocating.
func minSize(f *protogen.Field) int {
	switch f.Desc.Kind() {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return 4
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return 8
	case protoreflect.MessageKind:
		switch encodingOf(f.Message) {
		case encTimestamp, encDuration:
			return 2
		case encAxon:
			return max(1, (len(slotsOf(f.Message))+7)/8) // its bitmap
		}
	}
	return 1 // a varint, a length or a bool
}

func strquote(s string) string { return strconv.Quote(s) }
func itoa(i int) string        { return strconv.Itoa(i) }
