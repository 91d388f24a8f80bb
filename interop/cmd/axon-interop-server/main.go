// Command axon-interop-server is an Axon server with grpc.testing.TestService
// (interop/grpctesting) beside the standard services, for gRPC's interop test
// clients: `axon-interop-server serve --config FILE`, where FILE lists a
// listener with `protocols: [grpc]` (see interop/grpc-interop.sh).
package main

import (
	"os"

	"github.com/axonrpc/axon/app"
	"github.com/axonrpc/axon/interop/grpctesting"
	"github.com/axonrpc/axon/kernel"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr, kernel.ProvideService(grpctesting.Desc)))
}
