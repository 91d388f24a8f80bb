package reflection

import (
	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
)

// Module serves gRPC server reflection (v1 and v1alpha) on every Axon server
// of the application.
var Module = fx.Module("service.reflection",
	fx.Provide(New),
	kernel.ProvideService((*Server).V1Desc),
	kernel.ProvideService((*Server).V1AlphaDesc),
	fx.Invoke(func(s *Server, t *kernel.ServiceTable) { s.Attach(t) }),
)
