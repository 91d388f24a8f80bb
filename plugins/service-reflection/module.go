package reflection

import (
	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
)

// Module serves gRPC server reflection (v1 and v1alpha) on every Axon server
// of the application.
var Module = fx.Module("service.reflection",
	fx.Provide(New),
	kernel.ProvideService(func(s *Server) *kernel.ServiceDesc { return s.Descs()[0] }),
	kernel.ProvideService(func(s *Server) *kernel.ServiceDesc { return s.Descs()[1] }),
	fx.Invoke(func(s *Server, t *kernel.ServiceTable) { s.Attach(t) }),
)
