package main

import (
	"encoding/json"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"
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

// plugin builds a protogen.Plugin over one proto3 file, t/test.proto,
// declaring msgs (name -> fields, oneof names), an enum Color and the
// service Svc, whose methods have every streaming shape:
//
//	rpc Do(A) returns (A) { option idempotency_level = IDEMPOTENT; }
//	rpc Watch(A) returns (stream A) { option idempotency_level = NO_SIDE_EFFECTS; }
//	rpc Upload(stream A) returns (google.protobuf.Empty);
//	rpc Talk(stream google.protobuf.Empty) returns (stream A);
func plugin(t *testing.T, msgs map[string][]fieldSpec, oneofs map[string][]string, colors []string) *protogen.Plugin {
	t.Helper()
	empty := protodesc.ToFileDescriptorProto(emptypb.File_google_protobuf_empty_proto)
	fd := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("t/test.proto"),
		Package:    proto.String("axon.gen.test"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{empty.GetName()},
		Options:    &descriptorpb.FileOptions{GoPackage: proto.String("example.com/t;t")},
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
	const a, e = ".axon.gen.test.A", ".google.protobuf.Empty"
	rpc := func(name, in, out string, cs, ss bool, level descriptorpb.MethodOptions_IdempotencyLevel) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{
			Name: proto.String(name), InputType: proto.String(in), OutputType: proto.String(out),
			ClientStreaming: proto.Bool(cs), ServerStreaming: proto.Bool(ss),
			Options: &descriptorpb.MethodOptions{IdempotencyLevel: level.Enum()},
		}
	}
	fd.Service = []*descriptorpb.ServiceDescriptorProto{{
		Name: proto.String("Svc"),
		Method: []*descriptorpb.MethodDescriptorProto{
			rpc("Do", a, a, false, false, descriptorpb.MethodOptions_IDEMPOTENT),
			rpc("Watch", a, a, false, true, descriptorpb.MethodOptions_NO_SIDE_EFFECTS),
			rpc("Upload", a, e, true, false, descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN),
			rpc("Talk", e, a, true, true, descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN),
		},
	}}
	gen, err := protogen.Options{}.New(&pluginpb.CodeGeneratorRequest{
		FileToGenerate: []string{"t/test.proto"},
		ProtoFile:      []*descriptorpb.FileDescriptorProto{empty, fd},
	})
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

// testFile returns t/test.proto, the file that plugin's generator generates.
func testFile(gen *protogen.Plugin) *protogen.File {
	return gen.FilesByPath["t/test.proto"]
}

func message(gen *protogen.Plugin, name string) *protogen.Message {
	for _, m := range testFile(gen).Messages {
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
		return newFingerprinter().fingerprint(message(plugin(t, msgs, oneofs, colors), "A"))
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
	gen := plugin(t, msgs, nil, nil)
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

// generate runs the generator over plugin's file and returns the content of
// the one file it writes.
func generate(t *testing.T, gen *protogen.Plugin) string {
	t.Helper()
	if err := generateFile(gen, testFile(gen), newFingerprinter()); err != nil {
		t.Fatal(err)
	}
	resp := gen.Response()
	if resp.Error != nil || len(resp.File) != 1 {
		t.Fatalf("response: %v", resp)
	}
	if resp.File[0].GetName() != "example.com/t/test_axon.pb.go" {
		t.Errorf("file name %q", resp.File[0].GetName())
	}
	return resp.File[0].GetContent()
}

// TestGenerate checks the generated API of a service with a method of every
// streaming shape, and that idempotency_level marks methods idempotent.
func TestGenerate(t *testing.T) {
	out := generate(t, plugin(t, map[string][]fieldSpec{"A": {field("id", 1, tInt32)}}, nil, nil))
	for _, tc := range []struct{ what, want string }{
		{"header", "// Code generated by protoc-gen-axon. DO NOT EDIT.\n"},
		{"version", "// \tprotoc-gen-axon " + version + "\n"},
		{"server interface", "type SvcServer interface {\n"},
		{"unary server method", "\tDo(context.Context, *A) (*A, error)\n"},
		{"server-streaming server method", "\tWatch(*A, kernel.ServerStreamingServer[A]) error\n"},
		{"client-streaming server method", "\tUpload(kernel.ClientStreamingServer[A, emptypb.Empty]) error\n"},
		{"bidi server method", "\tTalk(kernel.BidiStreamingServer[emptypb.Empty, A]) error\n"},
		{"unimplemented streaming method", "func (UnimplementedSvcServer) Watch(*A, kernel.ServerStreamingServer[A]) error {\n" +
			"\treturn status.New(status.Unimplemented, \"method axon.gen.test.Svc/Watch is not implemented\")\n}\n"},
		{"service description", "func NewSvcService(s SvcServer) *kernel.ServiceDesc {\n"},
		{"unary description", "\tkernel.Unary(\"Do\", s.Do),\n"},
		{"server-streaming description", "\tkernel.ServerStreaming(\"Watch\", s.Watch),\n"},
		{"client-streaming description", "\tkernel.ClientStreaming(\"Upload\", s.Upload),\n"},
		{"bidi description", "\tkernel.BidiStreaming(\"Talk\", s.Talk),\n"},
		{"IDEMPOTENT", "\tsvc.Methods[0].Idempotent = true\n"},
		{"NO_SIDE_EFFECTS", "\tsvc.Methods[1].Idempotent = true\n"},
		{"client constructor", "func NewSvcClient(cc kernel.Invoker) SvcClient {\n"},
		{"unary client method", "\tDo(ctx context.Context, in *A, opts ...kernel.CallOption) (*A, error)\n"},
		{"server-streaming client method", "\tWatch(ctx context.Context, in *A, opts ...kernel.CallOption) (kernel.ServerStreamingClient[A], error)\n"},
		{"client-streaming client method", "\tUpload(ctx context.Context, opts ...kernel.CallOption) (kernel.ClientStreamingClient[A, emptypb.Empty], error)\n"},
		{"bidi client method", "\tTalk(ctx context.Context, opts ...kernel.CallOption) (kernel.BidiStreamingClient[emptypb.Empty, A], error)\n"},
		{"idempotent unary call marked for retries", "\topts = append(opts, kernel.Idempotent())\n\tif err := c.cc.Invoke(ctx, Svc_Do_FullMethodName, in, out, opts...); err != nil {\n"},
		{"server-streaming call", "\treturn kernel.OpenServerStream[A, A](ctx, c.cc, Svc_Watch_FullMethodName, in, opts...)\n"},
		{"client-streaming call", "\treturn kernel.OpenClientStream[A, emptypb.Empty](ctx, c.cc, Svc_Upload_FullMethodName, opts...)\n"},
		{"bidi call", "\treturn kernel.OpenBidiStream[emptypb.Empty, A](ctx, c.cc, Svc_Talk_FullMethodName, opts...)\n"},
		{"binary codec", "func (m *A) AxonAppend(b []byte) []byte {\n"},
	} {
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s: generated code lacks %q", tc.what, tc.want)
		}
	}
	for _, unwanted := range []string{"svc.Methods[2].Idempotent", "svc.Methods[3].Idempotent"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("generated code has %q, but that method's idempotency_level is unknown", unwanted)
		}
	}
	if formatted, err := format.Source([]byte(out)); err != nil || string(formatted) != out {
		t.Errorf("generated code is not gofmt-clean (err %v)", err)
	}
}

// TestGeneratedCodeCompiles compiles the generated stubs together with
// protoc-gen-go's messages, as a package of this module that exists only in
// a go command overlay, and checks that UnimplementedSvcServer implements
// SvcServer.
func TestGeneratedCodeCompiles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	gen := plugin(t, map[string][]fieldSpec{"A": {field("id", 1, tInt32)}}, nil, nil)
	internal_gengo.GenerateFile(gen, testFile(gen))
	if err := generateFile(gen, testFile(gen), newFingerprinter()); err != nil {
		t.Fatal(err)
	}
	resp := gen.Response()
	if resp.Error != nil {
		t.Fatal(resp.GetError())
	}
	files := map[string]string{"check.go": "package t\n\nvar _ SvcServer = UnimplementedSvcServer{}\n"}
	for _, f := range resp.File {
		files[filepath.Base(f.GetName())] = f.GetContent()
	}
	// The package's directory does not exist on disk, so no other build
	// sees it.
	pkgDir, err := filepath.Abs("generated_overlay_test")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	overlay := map[string]map[string]string{"Replace": {}}
	for name, content := range files {
		path := filepath.Join(tmp, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		overlay["Replace"][filepath.Join(pkgDir, name)] = path
	}
	js, err := json.Marshal(overlay)
	if err != nil {
		t.Fatal(err)
	}
	overlayFile := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(overlayFile, js, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goCmd, "build", "-overlay", overlayFile, "./generated_overlay_test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build of the generated package: %v\n%s", err, out)
	}
}
