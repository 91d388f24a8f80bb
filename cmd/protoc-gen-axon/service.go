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

// shape is a method's streaming shape.
type shape int

const (
	unary shape = iota
	serverStreaming
	clientStreaming
	bidiStreaming
)

func shapeOf(m *protogen.Method) shape {
	switch cs, ss := m.Desc.IsStreamingClient(), m.Desc.IsStreamingServer(); {
	case cs && ss:
		return bidiStreaming
	case cs:
		return clientStreaming
	case ss:
		return serverStreaming
	}
	return unary
}

// method holds the Go spellings of one method's types in the file being
// generated.
type method struct {
	*protogen.Method
	shape   shape
	in, out string // the request and response types, qualified, without *
}

// serverSignature returns the parameters and results of the method in the
// server interface, in grpc-go's generic style:
//
//	unary:            (context.Context, *Req) (*Resp, error)
//	server streaming: (*Req, kernel.ServerStreamingServer[Resp]) error
//	client streaming: (kernel.ClientStreamingServer[Req, Resp]) error
//	bidirectional:    (kernel.BidiStreamingServer[Req, Resp]) error
func (m method) serverSignature(g *protogen.GeneratedFile) string {
	switch m.shape {
	case serverStreaming:
		return "(*" + m.in + ", " + kernelIdent(g, "ServerStreamingServer") + "[" + m.out + "]) error"
	case clientStreaming:
		return "(" + kernelIdent(g, "ClientStreamingServer") + "[" + m.in + ", " + m.out + "]) error"
	case bidiStreaming:
		return "(" + kernelIdent(g, "BidiStreamingServer") + "[" + m.in + ", " + m.out + "]) error"
	}
	return "(" + g.QualifiedGoIdent(contextPackage.Ident("Context")) + ", *" + m.in + ") (*" + m.out + ", error)"
}

// clientSignature returns the parameters and results of the method in the
// client interface: a unary method returns the response, a streaming one the
// kernel's typed client wrapper of its shape.
func (m method) clientSignature(g *protogen.GeneratedFile) string {
	ctx := "ctx " + g.QualifiedGoIdent(contextPackage.Ident("Context"))
	opts := "opts ..." + kernelIdent(g, "CallOption")
	switch m.shape {
	case serverStreaming:
		return "(" + ctx + ", in *" + m.in + ", " + opts + ") (" + kernelIdent(g, "ServerStreamingClient") + "[" + m.out + "], error)"
	case clientStreaming:
		return "(" + ctx + ", " + opts + ") (" + kernelIdent(g, "ClientStreamingClient") + "[" + m.in + ", " + m.out + "], error)"
	case bidiStreaming:
		return "(" + ctx + ", " + opts + ") (" + kernelIdent(g, "BidiStreamingClient") + "[" + m.in + ", " + m.out + "], error)"
	}
	return "(" + ctx + ", in *" + m.in + ", " + opts + ") (*" + m.out + ", error)"
}

// descFunc returns the kernel function that describes a method of m's
// shape.
func (m method) descFunc(g *protogen.GeneratedFile) string {
	switch m.shape {
	case serverStreaming:
		return kernelIdent(g, "ServerStreaming")
	case clientStreaming:
		return kernelIdent(g, "ClientStreaming")
	case bidiStreaming:
		return kernelIdent(g, "BidiStreaming")
	}
	return kernelIdent(g, "Unary")
}

func kernelIdent(g *protogen.GeneratedFile, name string) string {
	return g.QualifiedGoIdent(kernelPackage.Ident(name))
}

// genService writes the typed server and client API of s.
func genService(g *protogen.GeneratedFile, s *protogen.Service) {
	name := s.GoName
	full := string(s.Desc.FullName())
	methods := make([]method, len(s.Methods))
	for i, m := range s.Methods {
		methods[i] = method{m, shapeOf(m), g.QualifiedGoIdent(m.Input.GoIdent), g.QualifiedGoIdent(m.Output.GoIdent)}
	}

	g.P("// ", name, "_ServiceName is the full name of the ", full, " service.")
	g.P("const ", name, "_ServiceName = ", strquote(full))
	g.P()
	if len(methods) > 0 {
		g.P("// Full method names of the ", full, " service, as clients call them.")
		g.P("const (")
		for _, m := range methods {
			g.P(name, "_", m.GoName, "_FullMethodName = ", strquote("/"+full+"/"+string(m.Desc.Name())))
		}
		g.P(")")
		g.P()
	}

	// Server.
	g.P("// ", name, "Server is the server API of the ", full, " service.")
	leadingComments(g, s.Comments.Leading)
	g.P("type ", name, "Server interface {")
	for _, m := range methods {
		g.P(m.Comments.Leading, m.GoName, m.serverSignature(g))
	}
	g.P("}")
	g.P()
	g.P("// Unimplemented", name, "Server answers every method with UNIMPLEMENTED.")
	g.P("// Embed it in a server so that a method added to the .proto does not")
	g.P("// break the build.")
	g.P("type Unimplemented", name, "Server struct{}")
	g.P()
	for _, m := range methods {
		g.P("func (Unimplemented", name, "Server) ", m.GoName, m.serverSignature(g), " {")
		notImplemented := g.QualifiedGoIdent(statusPackage.Ident("New")) + "(" + g.QualifiedGoIdent(statusPackage.Ident("Unimplemented")) + ", " +
			strquote("method "+full+"/"+string(m.Desc.Name())+" is not implemented") + ")"
		if m.shape == unary {
			g.P("return nil, ", notImplemented)
		} else {
			g.P("return ", notImplemented)
		}
		g.P("}")
		g.P()
	}
	g.P("// New", name, "Service describes s as the ", full, " service; serve it")
	g.P("// with kernel.ProvideService.")
	g.P("func New", name, "Service(s ", name, "Server) *", kernelIdent(g, "ServiceDesc"), " {")
	var idempotent []string
	for i, m := range methods {
		if isIdempotent(m.Method) {
			idempotent = append(idempotent, itoa(i))
		}
	}
	if len(idempotent) == 0 {
		g.P("return ", kernelIdent(g, "NewService"), "(", name, "_ServiceName,")
	} else {
		g.P("svc := ", kernelIdent(g, "NewService"), "(", name, "_ServiceName,")
	}
	for _, m := range methods {
		g.P(m.descFunc(g), "(", strquote(string(m.Desc.Name())), ", s.", m.GoName, "),")
	}
	g.P(")")
	if len(idempotent) > 0 {
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
	for _, m := range methods {
		g.P(m.Comments.Leading, m.GoName, m.clientSignature(g))
	}
	g.P("}")
	g.P()
	client := lowerFirst(name) + "Client"
	g.P("// New", name, "Client returns a client of the ", full, " service that")
	g.P("// sends its calls through cc, such as a *kernel.Client.")
	g.P("func New", name, "Client(cc ", kernelIdent(g, "Invoker"), ") ", name, "Client {")
	g.P("return ", client, "{cc}")
	g.P("}")
	g.P()
	g.P("type ", client, " struct{ cc ", kernelIdent(g, "Invoker"), " }")
	g.P()
	for _, m := range methods {
		fullMethod := name + "_" + m.GoName + "_FullMethodName"
		g.P("func (c ", client, ") ", m.GoName, m.clientSignature(g), " {")
		switch m.shape {
		case unary:
			g.P("out := new(", m.out, ")")
			if isIdempotent(m.Method) {
				// The retry interceptor retries only calls marked so.
				g.P("opts = append(opts, ", kernelIdent(g, "Idempotent"), "())")
			}
			g.P("if err := c.cc.Invoke(ctx, ", fullMethod, ", in, out, opts...); err != nil {")
			g.P("return nil, err")
			g.P("}")
			g.P("return out, nil")
		case serverStreaming:
			g.P("return ", kernelIdent(g, "OpenServerStream"), "[", m.in, ", ", m.out, "](ctx, c.cc, ", fullMethod, ", in, opts...)")
		case clientStreaming:
			g.P("return ", kernelIdent(g, "OpenClientStream"), "[", m.in, ", ", m.out, "](ctx, c.cc, ", fullMethod, ", opts...)")
		case bidiStreaming:
			g.P("return ", kernelIdent(g, "OpenBidiStream"), "[", m.in, ", ", m.out, "](ctx, c.cc, ", fullMethod, ", opts...)")
		}
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

// isIdempotent reports whether m's idempotency_level option is
// NO_SIDE_EFFECTS or IDEMPOTENT, so that the kernel may retry it.
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
