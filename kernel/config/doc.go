// Package config loads Axon's YAML configuration and decodes it strictly into
// typed structs.
//
// Load (or LoadBytes) reads a YAML document with koanf and overlays environment
// variables that start with AXON_: the prefix is stripped, the rest is
// lowercased, and "__" separates nesting levels, so
//
//	AXON_CLIENT__CONNS_PER_ENDPOINT=4
//
// sets client.conns_per_endpoint to "4" (a single "_" stays part of the key).
// Environment values are strings; Decode parses them into the field's type.
// An environment variable cannot index into a list: AXON_LISTEN__0__ADDRESS
// replaces the whole listen list with a mapping, which Decode then rejects.
//
// Decode turns the resulting tree into a struct that already holds its
// defaults. Keys are matched exactly against `yaml` struct tags (or the field's
// snake_case name); an unknown key, a value of the wrong type or a value out of
// range is an *Error naming the full key path, the bad value and what was
// expected. All problems found in one pass are reported together, sorted by
// path. A plugin keeps its own block as a Raw and decodes it later into its own
// Config, so its errors carry full paths too:
//
//	service: greeter
//	listen:
//	  - { transport: tcp, address: "127.0.0.1:7443", protocols: [axon, grpc] }
//	registry: { use: static, options: { endpoints: { echo: ["127.0.0.1:7443"] } } }
//	server:
//	  drain_timeout: 30s
//	  limits: { max_message: 4MiB }
//
// decoded with
//
//	type Config struct {
//		Service  string     `yaml:"service" required:"true"`
//		Listen   []Listener `yaml:"listen"`
//		Registry *Plugin    `yaml:"registry"` // nil unless present
//		Server   Server     `yaml:"server"`
//	}
//	type Plugin struct {
//		Use     string     `yaml:"use" required:"true"`
//		Options config.Raw `yaml:"options"` // path "registry.options"
//	}
//	type Server struct {
//		DrainTimeout time.Duration `yaml:"drain_timeout" min:"0s"`
//		Limits       struct {
//			MaxMessage config.Size `yaml:"max_message" min:"1KiB" max:"1GiB"`
//		} `yaml:"limits"`
//	}
//
// Besides `yaml`, fields may carry the validation tags min and max (numbers,
// durations, sizes; on lists and maps they apply to each element), oneof
// (space-separated allowed strings) and required ("true": the key must be
// present and non-empty). Required keys of a struct-valued field are checked
// even when its whole block is absent; make the field a pointer to let the
// block be optional. A struct whose pointer has a Validate() error method
// is validated after its fields decode cleanly; FieldError builds errors with
// paths relative to that struct.
package config
