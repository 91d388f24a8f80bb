package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// envPrefix marks the environment variables that override configuration keys.
const envPrefix = "AXON_"

// Load reads the YAML file at path and overlays the AXON_ variables found in
// environ (a slice like os.Environ()), returning the merged tree. A variable's
// name minus the prefix, lowercased, with "__" separating nesting levels, is
// the key path: AXON_CLIENT__CONNS_PER_ENDPOINT=4 sets client.conns_per_endpoint
// to the string "4". A single "_" stays part of the key name. Variables with an
// empty value are ignored. An override cannot index into a list: it replaces
// whatever value is at its key path. Errors name the file.
func Load(path string, environ []string) (map[string]any, error) {
	return load(path, file.Provider(path), environ)
}

// LoadBytes is Load for an in-memory YAML document; name is used in errors.
func LoadBytes(name string, yaml []byte, environ []string) (map[string]any, error) {
	return load(name, bytesProvider(yaml), environ)
}

func load(name string, src koanf.Provider, environ []string) (map[string]any, error) {
	k := koanf.New(".")
	if err := k.Load(src, yaml.Parser()); err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	vars, err := envOverrides(environ)
	if err != nil {
		return nil, err
	}
	if len(vars) > 0 {
		p := env.Provider("__", env.Opt{
			Prefix:      envPrefix,
			EnvironFunc: func() []string { return vars },
			TransformFunc: func(k, v string) (string, any) {
				return strings.ToLower(strings.TrimPrefix(k, envPrefix)), v
			},
		})
		if err := k.Load(p, nil); err != nil {
			return nil, fmt.Errorf("config: environment: %w", err)
		}
	}
	return k.Raw(), nil
}

// envOverrides returns the AXON_ variables of environ that have a value. It
// rejects names that would make an ambiguous tree: an empty key segment, two
// names for the same key, or a key that is also the parent of another.
func envOverrides(environ []string) ([]string, error) {
	var vars []string
	names := map[string]string{} // key path -> variable name
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		key, ok := strings.CutPrefix(name, envPrefix)
		if !ok || val == "" {
			continue
		}
		key = strings.ToLower(key)
		if slices.Contains(strings.Split(key, "__"), "") {
			return nil, fmt.Errorf("config: environment: %s: empty key segment", name)
		}
		if other, dup := names[key]; dup {
			return nil, fmt.Errorf("config: environment: %s and %s set the same key", other, name)
		}
		names[key] = name
		vars = append(vars, kv)
	}
	for _, key := range slices.Sorted(maps.Keys(names)) {
		segs := strings.Split(key, "__")
		for n := 1; n < len(segs); n++ {
			if parent, ok := names[strings.Join(segs[:n], "__")]; ok {
				return nil, fmt.Errorf("config: environment: %s and %s both set %s", parent, names[key], strings.Join(segs[:n], "."))
			}
		}
	}
	return vars, nil
}

// bytesProvider is a koanf.Provider for an in-memory document.
type bytesProvider []byte

func (b bytesProvider) ReadBytes() ([]byte, error)    { return b, nil }
func (b bytesProvider) Read() (map[string]any, error) { return nil, fmt.Errorf("not supported") }
