// Package chaos runs attacks against a real `axon serve` process while a
// legitimate client keeps calling it, and checks the server's defences
// (the hardening limits of kernel.Limits): no legitimate call fails, every attacker
// connection is closed by the server within a bound derived from the
// configured limits, and the server's memory returns near its baseline.
//
// The scenarios live in the package's tests and are opt-in: they run only
// with CHAOS=1 (`make chaos`, scripts/chaos.sh); plain `go test ./...`
// skips them. Each prints one line starting with "CHAOS " that summarises
// it.
package chaos
