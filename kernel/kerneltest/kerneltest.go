// Package kerneltest runs Axon runtimes from YAML in tests: the loading,
// parsing and applying that every test of a plugin inside a real runtime
// repeats.
package kerneltest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// Config parses yaml as an Axon configuration, failing the test on an
// error.
func Config(t testing.TB, yaml string) *kernel.Config {
	t.Helper()
	tree, err := config.LoadBytes("test.yaml", []byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kernel.ParseConfig(tree)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Run applies the configuration yaml to a new runtime of the plugins in cat
// serving table, failing the test on an error, and shuts the runtime down
// when the test ends. The runtime logs nowhere.
func Run(t testing.TB, cat *kernel.Catalog, table *kernel.ServiceTable, yaml string) *kernel.Runtime {
	t.Helper()
	cfg := Config(t, yaml)
	rt := kernel.NewRuntime(cat, table, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Shutdown(context.Background()) })
	return rt
}
