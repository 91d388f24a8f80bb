package main

import (
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/descriptorpb"
)

const (
	contextPackage = protogen.GoImportPath("context")
	kernelPackage  = protogen.GoImportPath("github.com/axonrpc/axon/kernel")
	statusPackage  = protogen.GoImportPath("github.com/axonrpc/axon/kernel/status")
)

// genService writes the typed server and client API of s.
func genService(g *protogen.GeneratedFile, s *protogen.Service) {
	name := s.GoName
	full := string(s.Desc.FullName())
	ctx := g.QualifiedGoIdent(contextPackage.Ident("Context"))
	callOpt := g.QualifiedGoIdent(kernelPackage.Ident("CallOption"))

	g.P("// ", name, "_ServiceName is the full name of the ", full, " service.")
	g.P("const ", name, "_ServiceName = ", strquote(full))
	g.P()
	if len(s.Methods) > 0 {
		g.P("// Full method names of the ", full, " service, as clients call them.")
		g.P("const (")
		for _, m := range s.Methods {
			g.P(name, "_", m.GoName, "_FullMethodName = ", strquote("/"+full+"/"+string(m.Desc.Name())))
		}
		g.P(")")
		g.P()
	}

	// Server.
	g.P("// ", name, "Server is the server API of the ", full, " service.")
	leadingComments(g, s.Comments.Leading)
	g.P("type ", name, "Server interface {")
	for _, m := range s.Methods {
		g.P(m.Comments.Leading, m.GoName, "(", ctx, ", *", g.QualifiedGoIdent(m.Input.GoIdent), ") (*", g.QualifiedGoIdent(m.Output.GoIdent), ", error)")
	}
	g.P("}")
	g.P()
	g.P("// Unimplemented", name, "Server answers every method with UNIMPLEMENTED.")
	g.P("// Embed it in a server so that a method added to the .proto does not")
	g.P("// break the build.")
	g.P("type Unimplemented", name, "Server struct{}")
	g.P()
	for _, m := range s.Methods {
		g.P("func (Unimplemented", name, "Server) ", m.GoName, "(", ctx, ", *", g.QualifiedGoIdent(m.Input.GoIdent), ") (*", g.QualifiedGoIdent(m.Output.GoIdent), ", error) {")
		g.P("return nil, ", g.QualifiedGoIdent(statusPackage.Ident("New")), "(", g.QualifiedGoIdent(statusPackage.Ident("Unimplemented")), ", ",
			strquote("method "+full+"/"+string(m.Desc.Name())+" is not implemented"), ")")
		g.P("}")
		g.P()
	}
	g.P("// New", name, "Service describes s as the ", full, " service; serve it")
	g.P("// with kernel.ProvideService.")
	g.P("func New", name, "Service(s ", name, "Server) *", g.QualifiedGoIdent(kernelPackage.Ident("ServiceDesc")), " {")
	var idempotent []string
	for i, m := range s.Methods {
		if isIdempotent(m) {
			idempotent = append(idempotent, itoa(i))
		}
	}
	unary := g.QualifiedGoIdent(kernelPackage.Ident("Unary"))
	if len(idempotent) == 0 {
		g.P("return ", g.QualifiedGoIdent(kernelPackage.Ident("NewService")), "(", name, "_ServiceName,")
		for _, m := range s.Methods {
			g.P(unary, "(", strquote(string(m.Desc.Name())), ", s.", m.GoName, "),")
		}
		g.P(")")
	} else {
		g.P("svc := ", g.QualifiedGoIdent(kernelPackage.Ident("NewService")), "(", name, "_ServiceName,")
		for _, m := range s.Methods {
			g.P(unary, "(", strquote(string(m.Desc.Name())), ", s.", m.GoName, "),")
		}
		g.P(")")
		g.P("// Methods whose idempotency_level says they may be retried.")
		for _, i := range idempotent {
			g.P("svc.Methods[", i, "].Idempotent = true")
		}
		g.P("return svc")
	}
	g.P("}")
	g.P()

	// Client.
	g.P("// ", name, "Client is the client API of the ", full, " service.")
	g.P("type ", name, "Client interface {")
	for _, m := range s.Methods {
		g.P(m.Comments.Leading, m.GoName, "(ctx ", ctx, ", in *", g.QualifiedGoIdent(m.Input.GoIdent), ", opts ...", callOpt, ") (*", g.QualifiedGoIdent(m.Output.GoIdent), ", error)")
	}
	g.P("}")
	g.P()
	client := lowerFirst(name) + "Client"
	g.P("// New", name, "Client returns a client of the ", full, " service that")
	g.P("// sends its calls through cc, such as a *kernel.Client.")
	g.P("func New", name, "Client(cc ", g.QualifiedGoIdent(kernelPackage.Ident("Invoker")), ") ", name, "Client {")
	g.P("return ", client, "{cc}")
	g.P("}")
	g.P()
	g.P("type ", client, " struct{ cc ", g.QualifiedGoIdent(kernelPackage.Ident("Invoker")), " }")
	g.P()
	for _, m := range s.Methods {
		g.P("func (c ", client, ") ", m.GoName, "(ctx ", ctx, ", in *", g.QualifiedGoIdent(m.Input.GoIdent), ", opts ...", callOpt, ") (*", g.QualifiedGoIdent(m.Output.GoIdent), ", error) {")
		g.P("out := new(", g.QualifiedGoIdent(m.Output.GoIdent), ")")
		g.P("if err := c.cc.Invoke(ctx, ", name, "_", m.GoName, "_FullMethodName, in, out, opts...); err != nil {")
		g.P("return nil, err")
		g.P("}")
		g.P("return out, nil")
		g.P("}")
		g.P()
	}
}

// leadingComments writes c, the proto comments of a declaration, as a
// continuation of its doc comment.
func leadingComments(g *protogen.GeneratedFile, c protogen.Comments) {
	if c == "" {
		return
	}
	g.P("//")
	g.P(strings.TrimSuffix(c.String(), "\n"))
}

func isIdempotent(m *protogen.Method) bool {
	o, ok := m.Desc.Options().(*descriptorpb.MethodOptions)
	if !ok || o == nil {
		return false
	}
	switch o.GetIdempotencyLevel() {
	case descriptorpb.MethodOptions_IDEMPOTENT, descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
		return true
	}
	return false
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
