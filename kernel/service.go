package kernel

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/fx"
)

// UnaryHandler handles one unary call: req is the decoded request message
// and the result is the response message or an error (a *status.Error, or any
// error, which becomes UNKNOWN).
type UnaryHandler func(ctx context.Context, req any) (any, error)

// MethodDesc describes one method of a service. It is immutable once its
// service is registered.
type MethodDesc struct {
	// Name is the method's short name, such as "Say".
	Name string
	// FullName is "/package.Service/Method", the gRPC path of the method.
	FullName string
	// NewRequest returns a new, empty request message.
	NewRequest func() any
	// NewResponse returns a new, empty response message.
	NewResponse func() any
	// Handler runs a unary method's business logic, without interceptors.
	// It is nil for a streaming method.
	Handler UnaryHandler
	// ClientStreams and ServerStreams give a streaming method's shape:
	// client streaming, server streaming, or both (bidirectional).
	ClientStreams, ServerStreams bool
	// Stream runs a streaming method's business logic, without
	// interceptors. It is nil for a unary method.
	Stream StreamHandler
	// Idempotent marks a method safe to retry after it may have run.
	Idempotent bool

	spec *Spec // set by NewServiceTable
}

// Spec returns the description of a call to m that interceptors see.
func (m *MethodDesc) Spec() *Spec {
	if m.spec != nil {
		return m.spec
	}
	return specOf(m)
}

// ServiceDesc describes a service: its full protobuf name and its methods.
type ServiceDesc struct {
	Name    string
	Methods []*MethodDesc
}

// Unary returns the description of a unary method named name whose handler
// takes *Req and returns *Resp. Generated stubs call it; hand-written
// services may too. The method's full name is set by NewService.
func Unary[Req, Resp any](name string, h func(context.Context, *Req) (*Resp, error)) *MethodDesc {
	return &MethodDesc{
		Name:        name,
		NewRequest:  func() any { return new(Req) },
		NewResponse: func() any { return new(Resp) },
		Handler: func(ctx context.Context, req any) (any, error) {
			resp, err := h(ctx, req.(*Req))
			if err != nil {
				return nil, err
			}
			return resp, nil
		},
	}
}

// Invoker sends unary and streaming calls. *Client implements it; generated clients
// (protoc-gen-axon's NewXClient) take one, so tests may pass a fake.
type Invoker interface {
	// Invoke calls method ("/pkg.Service/Method") with req and decodes the
	// response into resp.
	Invoke(ctx context.Context, method string, req, resp any, opts ...CallOption) error
	// NewStream opens a streaming call to method.
	NewStream(ctx context.Context, method string, opts ...CallOption) (ClientStream, error)
}

var _ Invoker = (*Client)(nil)

// NewService returns the description of the service with the full protobuf
// name name (such as "axon.example.v1.Echo") and the given methods, setting
// each method's FullName.
func NewService(name string, methods ...*MethodDesc) *ServiceDesc {
	for _, m := range methods {
		m.FullName = "/" + name + "/" + m.Name
	}
	return &ServiceDesc{Name: name, Methods: methods}
}

// ServiceGroup is the fx value group that service modules contribute their
// *ServiceDesc to.
const ServiceGroup = `group:"axon.services"`

// ProvideService returns an fx option that serves the service that newSvc
// builds (an fx constructor whose parameters fx supplies, returning a
// *ServiceDesc).
func ProvideService(newSvc any) fx.Option {
	return fx.Provide(fx.Annotate(newSvc, fx.ResultTags(ServiceGroup)))
}

// ServiceTable indexes methods by full name. It is immutable once built and
// safe for concurrent use.
type ServiceTable struct {
	methods  map[string]*MethodDesc
	services []*ServiceDesc
}

// NewServiceTable indexes services; a service or method registered twice is
// an error.
func NewServiceTable(services []*ServiceDesc) (*ServiceTable, error) {
	t := &ServiceTable{methods: make(map[string]*MethodDesc)}
	seen := make(map[string]bool)
	for _, s := range services {
		if s == nil {
			continue
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("kernel: service %q is registered twice", s.Name)
		}
		seen[s.Name] = true
		t.services = append(t.services, s)
		for _, m := range s.Methods {
			if _, dup := t.methods[m.FullName]; dup {
				return nil, fmt.Errorf("kernel: method %q is registered twice", m.FullName)
			}
			if m.spec == nil {
				m.spec = specOf(m)
			}
			t.methods[m.FullName] = m
		}
	}
	return t, nil
}

// Lookup returns the method with full name "/pkg.Service/Method"; the leading
// slash may be omitted. It returns nil for an unknown method.
func (t *ServiceTable) Lookup(fullName string) *MethodDesc {
	if m := t.methods[fullName]; m != nil {
		return m
	}
	if !strings.HasPrefix(fullName, "/") {
		return t.methods["/"+fullName]
	}
	return nil
}

// Services returns the registered services in registration order.
func (t *ServiceTable) Services() []*ServiceDesc { return t.services }
