package config_test

import (
	"testing"

	"github.com/axonrpc/axon/kernel/config"
)

// FuzzDecode feeds arbitrary YAML and one environment override through
// LoadBytes and Decode; neither may panic.
func FuzzDecode(f *testing.F) {
	seeds := []struct{ doc, env string }{
		{"service: greeter\nlisten: [{ transport: tcp, address: a, tls: { mode: mutual } }]", "AXON_CLIENT__CONNS_PER_ENDPOINT=4"},
		{"server: { limits: { max_message: 4MiB, max_streams: -1 }, drain_timeout: 1.5s }", "AXON_SERVER__LIMITS__MAX_MESSAGE=1.5GiB"},
		{"registry: { use: static, options: { endpoints: { echo: [a, 1, null] } } }", "AXON_LISTEN__0=x"},
		{"i8: 1e400\nu64: 18446744073709551616\nf32: .nan\nsize: 0.0000001KiB\naddr: [1]", "AXON_MT__X__MODE=dev"},
		{"mt: { ? [a] : 1, 2: { mode: off } }\nml: { a: [[1]] }\npt: ~\nlt: [null, 3]", "AXON_PI=9"},
		{"a: &x [*x]", "AXON_A____B=1"},
		{"nest: !!binary aGVsbG8=\nd: 2001-12-14", "AXON_A=1"},
	}
	for _, s := range seeds {
		f.Add(s.doc, s.env)
	}
	f.Fuzz(func(t *testing.T, doc, env string) {
		tree, err := config.LoadBytes("fuzz.yaml", []byte(doc), []string{env})
		if err != nil {
			return
		}
		root := defaultRoot()
		if err := config.Decode(tree, "", &root); err == nil {
			if root.Registry != nil {
				root.Client.Interceptors = append(root.Client.Interceptors, *root.Registry)
			}
			for _, p := range root.Client.Interceptors {
				_ = p.Options.Decode(&StaticRegistry{})
				_ = p.Options.Decode(&Retry{})
			}
		}
		_ = config.Decode(tree, "", &Kinds{})
	})
}
