package health

import (
	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
)

// Module serves grpc.health.v1.Health on every Axon server of the
// application and provides the *Server, so that the application can set
// per-service statuses.
var Module = fx.Module("service.health",
	fx.Provide(New),
	kernel.ProvideService(func(s *Server) *kernel.ServiceDesc { return s.Desc() }),
	fx.Invoke(func(s *Server, t *kernel.ServiceTable, rt *kernel.Runtime) { s.Attach(t, rt.Stopping()) }),
)
