// Package kernel defines Axon's extension points and the runtime that
// composes plugins into running server generations.
//
// The kernel imports no plugin. A plugin contributes a Factory to the fx value
// group "axon.factories" (see ProvideFactory); the Catalog indexes factories
// by kind and name, and a configuration selects them by name. Factories live
// for the process. The instances they build live for one configuration
// generation: the Runtime builds a new generation beside the running one,
// starts it, swaps it in, drains the old one and cleans it up (see Runtime
// and lifecycle.go); connections on listeners a reload leaves unchanged are
// kept. Runtime.Snapshot is the live view of what runs (see liveview.go).
// docs/architecture.md gives the whole picture.
//
// Extension points, each a small interface:
//
//   - Transport: listen and dial for one address family (tcp, uds, quic).
//   - Protocol: framing and dispatch on a connection (the native Axon protocol;
//     gRPC and gRPC-Web in plugins/protocol-grpc).
//   - Codec: marshal and unmarshal messages by content subtype.
//   - Resolver and Registry: find and publish a service's endpoints.
//   - Interceptor: unary and stream middleware on the server and the client
//     side; its Guard side sees each client attempt once its endpoint is
//     picked (a circuit breaker).
//   - Balancer: picks an endpoint per call (round robin by default).
//   - Router: narrows the endpoints a call may use (routing rules).
package kernel
