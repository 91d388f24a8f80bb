package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

type fieldSpec struct {
	name     string
	num      int32
	typ      descriptorpb.FieldDescriptorProto_Type
	typeName string // for messages and enums
	repeated bool
	optional bool   // proto3 optional
	oneof    *int32 // index into the message's oneofs
}

func field(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type) fieldSpec {
	return fieldSpec{name: name, num: num, typ: typ}
}

// plugin builds a protogen.Plugin over one proto3 file declaring msgs
// (name -> fields, oneof names), an enum Color and a service.
func plugin(t *testing.T, msgs map[string][]fieldSpec, oneofs map[string][]string, colors []string, streaming bool) *protogen.Plugin {
	t.Helper()
	fd := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("t/test.proto"),
		Package: proto.String("axon.gen.test"),
		Syntax:  proto.String("proto3"),
		Options: &descriptorpb.FileOptions{GoPackage: proto.String("example.com/t;t")},
	}
	for i, c := range colors {
		if i == 0 {
			fd.EnumType = append(fd.EnumType, &descriptorpb.EnumDescriptorProto{Name: proto.String("Color")})
		}
		fd.EnumType[0].Value = append(fd.EnumType[0].Value, &descriptorpb.EnumValueDescriptorProto{Name: proto.String(c), Number: proto.Int32(int32(i))})
	}
	for _, name := range []string{"A", "B", "C"} {
		fields, ok := msgs[name]
		if !ok {
			continue
		}
		md := &descriptorpb.DescriptorProto{Name: proto.String(name)}
		for _, o := range oneofs[name] {
			md.OneofDecl = append(md.OneofDecl, &descriptorpb.OneofDescriptorProto{Name: proto.String(o)})
		}
		for _, f := range fields {
			label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
			if f.repeated {
				label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
			}
			fdp := &descriptorpb.FieldDescriptorProto{
				Name: proto.String(f.name), Number: proto.Int32(f.num), Type: f.typ.Enum(), Label: label.Enum(),
				JsonName: proto.String(f.name),
			}
			if f.typeName != "" {
				fdp.TypeName = proto.String(".axon.gen.test." + f.typeName)
			}
			if f.oneof != nil {
				fdp.OneofIndex = f.oneof
			}
			if f.optional {
				fdp.Proto3Optional = proto.Bool(true)
				fdp.OneofIndex = proto.Int32(int32(len(md.OneofDecl)))
				md.OneofDecl = append(md.OneofDecl, &descriptorpb.OneofDescriptorProto{Name: proto.String("_" + f.name)})
			}
			md.Field = append(md.Field, fdp)
		}
		fd.MessageType = append(fd.MessageType, md)
	}
	fd.Service = []*descriptorpb.ServiceDescriptorProto{{
		Name: proto.String("Svc"),
		Method: []*descriptorpb.MethodDescriptorProto{{
			Name: proto.String("Do"), InputType: proto.String(".axon.gen.test.A"), OutputType: proto.String(".axon.gen.test.A"),
			ServerStreaming: proto.Bool(streaming),
			Options:         &descriptorpb.MethodOptions{IdempotencyLevel: descriptorpb.MethodOptions_IDEMPOTENT.Enum()},
		}},
	}}
	gen, err := protogen.Options{}.New(&pluginpb.CodeGeneratorRequest{FileToGenerate: []string{"t/test.proto"}, ProtoFile: []*descriptorpb.FileDescriptorProto{fd}})
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

func message(gen *protogen.Plugin, name string) *protogen.Message {
	for _, m := range gen.Files[0].Messages {
		if m.GoIdent.GoName == name {
			return m
		}
	}
	return nil
}

const (
	tInt32   = descriptorpb.FieldDescriptorProto_TYPE_INT32
	tSint32  = descriptorpb.FieldDescriptorProto_TYPE_SINT32
	tString  = descriptorpb.FieldDescriptorProto_TYPE_STRING
	tMessage = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	tEnum    = descriptorpb.FieldDescriptorProto_TYPE_ENUM
)

// TestFingerprint checks that every schema change the encoding cannot
// absorb changes the fingerprint, and that harmless ones do not.
func TestFingerprint(t *testing.T) {
	zero := int32(0)
	base := map[string][]fieldSpec{
		"A": {field("id", 1, tInt32), field("name", 2, tString), {name: "b", num: 3, typ: tMessage, typeName: "B"}, {name: "color", num: 4, typ: tEnum, typeName: "Color"}},
		"B": {field("x", 1, tInt32)},
	}
	colors := []string{"COLOR_UNSPECIFIED", "COLOR_RED"}
	fpOf := func(msgs map[string][]fieldSpec, oneofs map[string][]string, colors []string) uint64 {
		return newFingerprinter().fingerprint(message(plugin(t, msgs, oneofs, colors, false), "A"))
	}
	want := fpOf(base, nil, colors)
	with := func(change func(a, b []fieldSpec) ([]fieldSpec, []fieldSpec)) map[string][]fieldSpec {
		a, b := change(append([]fieldSpec(nil), base["A"]...), append([]fieldSpec(nil), base["B"]...))
		return map[string][]fieldSpec{"A": a, "B": b}
	}
	for _, tc := range []struct {
		name   string
		msgs   map[string][]fieldSpec
		oneofs map[string][]string
		same   bool
	}{
		{"unchanged", base, nil, true},
		{"field added", with(func(a, b []fieldSpec) ([]fieldSpec, []fieldSpec) { return append(a, field("new", 5, tInt32)), b }), nil, false},
		{"field removed", with(func(a, b []fieldSpec) ([]fieldSpec, []fieldSpec) { return a[1:], b }), nil, false},
		{"field renamed", with(func(a, b []fieldSpec) ([]fieldSpec, []fieldSpec) { a[0].name = "ident"; return a, b }), nil, false},
		{"field renumbered", with(func(a, b []fieldSpec) ([]fieldSpec, []fieldSpec) { a[0].num = 9; return a, b }), nil, false},
		{"kind changed", with(func(a, b []fieldSpec) ([]fieldSpec, []fieldSpec) { a[0].typ = tSint32; return a, b }), nil, false},
		{"made repeated", with(func(a, b []fieldSpec) ([]fieldSpec, []fieldSpec) { a[0].repeated = true; return a, b }), nil, false},
		{"made optional", with(func(a, b []fieldSpec) ([]fieldSpec, []fieldSpec) { a[0].optional = true; return a, b }), nil, false},
		{"moved into a oneof", with(func(a, b []fieldSpec) ([]fieldSpec, []fieldSpec) { a[0].oneof = &zero; return a, b }), map[string][]string{"A": {"choice"}}, false},
		{"nested message changed", with(func(a, b []fieldSpec) ([]fieldSpec, []fieldSpec) { return a, append(b, field("y", 2, tInt32)) }), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fpOf(tc.msgs, tc.oneofs, colors); (got == want) != tc.same {
				t.Fatalf("fingerprint %016x, base %016x: same = %v, want %v", got, want, got == want, tc.same)
			}
		})
	}
	if got := fpOf(base, nil, append(colors, "COLOR_BLUE")); got != want {
		t.Fatal("adding an enum value changed the fingerprint")
	}
}

func TestFingerprintRecursive(t *testing.T) {
	msgs := map[string][]fieldSpec{
		"A": {{name: "self", num: 1, typ: tMessage, typeName: "A"}, {name: "b", num: 2, typ: tMessage, typeName: "B"}},
		"B": {{name: "a", num: 1, typ: tMessage, typeName: "A"}, {name: "c", num: 2, typ: tMessage, typeName: "C", repeated: true}},
		"C": {field("v", 1, tInt32)},
	}
	gen := plugin(t, msgs, nil, nil, false)
	fps := newFingerprinter()
	a, b := fps.fingerprint(message(gen, "A")), fps.fingerprint(message(gen, "B"))
	// Computed in another order, with a fresh cache, the results agree.
	fps2 := newFingerprinter()
	if b2, a2 := fps2.fingerprint(message(gen, "B")), fps2.fingerprint(message(gen, "A")); a != a2 || b != b2 {
		t.Fatalf("fingerprints depend on the order they are computed in: %x %x vs %x %x", a, b, a2, b2)
	}
	if s := newFingerprinter().canonical(message(gen, "A")); !strings.Contains(s, "1 self singular ref axon.gen.test.A") {
		t.Fatalf("canonical schema of a recursive message:\n%s", s)
	}
}

func TestGenerate(t *testing.T) {
	msgs := map[string][]fieldSpec{"A": {field("id", 1, tInt32)}}
	gen := plugin(t, msgs, nil, nil, false)
	if err := generateFile(gen, gen.Files[0], newFingerprinter()); err != nil {
		t.Fatal(err)
	}
	resp := gen.Response()
	if resp.Error != nil || len(resp.File) != 1 {
		t.Fatalf("response: %v", resp)
	}
	out := resp.File[0].GetContent()
	for _, want := range []string{
		"// Code generated by protoc-gen-axon. DO NOT EDIT.",
		"type SvcServer interface {",
		"func NewSvcService(s SvcServer) *kernel.ServiceDesc {",
		"svc.Methods[0].Idempotent = true",
		"func NewSvcClient(cc kernel.Invoker) SvcClient {",
		"func (m *A) AxonAppend(b []byte) []byte {",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("generated code lacks %q", want)
		}
	}
	if resp.File[0].GetName() != "example.com/t/test_axon.pb.go" {
		t.Errorf("file name %q", resp.File[0].GetName())
	}

	gen = plugin(t, msgs, nil, nil, true)
	err := generateFile(gen, gen.Files[0], newFingerprinter())
	if err == nil || !strings.Contains(err.Error(), "method axon.gen.test.Svc.Do is streaming") {
		t.Fatalf("streaming method: got %v", err)
	}
}
