// Package local is a registry for one machine that needs no server: each
// running instance writes its endpoints to a file in a shared directory, and
// clients read and watch that directory.
package local

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
)

// Config is the registry's options block.
type Config struct {
	// Dir holds one folder per service and one file per registered
	// instance. Default: $XDG_RUNTIME_DIR/axon/registry, or
	// <tmp>/axon-<uid>/registry without XDG_RUNTIME_DIR.
	Dir string `yaml:"dir"`
	// Debounce is how long a watcher waits for a burst of changes to end
	// before it reads the directory again.
	Debounce time.Duration `yaml:"debounce" min:"0s" max:"10s"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Dir: defaultDir(), Debounce: 20 * time.Millisecond}
}

func defaultDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "axon", "registry")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("axon-%d", os.Getuid()), "registry")
}

// Factory builds the registry, named "local".
var Factory = kernel.NewFactory(kernel.KindRegistry, "local", DefaultConfig,
	func(_ kernel.BuildContext, cfg Config) (kernel.Resolver, error) { return New(cfg) })

// Module contributes the local registry to an Axon application.
var Module = fx.Module("registry.local", kernel.ProvideFactory(Factory))
