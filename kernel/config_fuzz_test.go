package kernel_test

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

// FuzzLoad loads a YAML document and environment overrides (one variable a
// line) as a process loads its configuration: config.LoadBytes, then
// kernel.ParseConfig. Neither may panic; a load error names the file or
// the environment; a parse error is one *config.Error or several joined,
// sorted by key path, each naming its path; a configuration that parses
// validates again, and re-encoded as a tree (sizes and durations as
// strings) parses to the same configuration. Seeds: configs/*.yaml, and
// testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "configs", "*.yaml"))
	for _, name := range files {
		doc, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(doc, "")
	}
	for _, s := range []struct{ doc, env string }{
		{"service: s\nlisten: [{ address: 127.0.0.1:0 }]\ntls: { mode: \"off\" }", ""},
		{"service: s\ntls: { mode: \"off\" }", "AXON_SERVER__LIMITS__MAX_MESSAGE=1.5MiB\nAXON_CLIENT__TIMEOUT=2s"},
		{"service: s\ntls: { mode: \"off\" }\nclient: { method_timeouts: { \"/a.B/C\": 0s } }", ""},
		{"service: s\ntls: { mode: off }", ""}, // unquoted: still a string in YAML 1.2
		{"service: s\ntls: { mode: \"off\" }\nlisten: [{ address: a }, { address: a }]", ""},
	} {
		f.Add([]byte(s.doc), s.env)
	}
	f.Fuzz(func(t *testing.T, doc []byte, env string) {
		// A larger document only spends the budget in the YAML parser.
		// (Alias bombs are refused by the parser, "document contains
		// excessive aliasing", well below this.)
		if len(doc) > 64<<10 || len(env) > 4<<10 {
			t.Skip()
		}
		var environ []string
		if env != "" {
			environ = strings.Split(env, "\n")
		}
		tree, err := config.LoadBytes("fuzz.yaml", doc, environ)
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "config: fuzz.yaml: ") && !strings.HasPrefix(msg, "config: environment: ") {
				t.Fatalf("load error names neither the file nor the environment: %v", err)
			}
			return
		}
		cfg, err := kernel.ParseConfig(tree)
		if err != nil {
			fuzzCheckConfigError(t, err)
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("a parsed configuration does not validate again: %v", err)
		}
		again, err := kernel.ParseConfig(fuzzEncodeConfig(t, cfg))
		if err != nil {
			t.Fatalf("a parsed configuration, re-encoded, does not parse: %v", err)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("a parsed configuration, re-encoded, parses to\n%+v\nnot\n%+v", again, cfg)
		}
	})
}

// fuzzCheckConfigError checks that err is one *config.Error or several
// joined, sorted by path, each message starting with its path.
func fuzzCheckConfigError(t *testing.T, err error) {
	t.Helper()
	leaves := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		leaves = j.Unwrap()
	}
	var paths []string
	for _, e := range leaves {
		ce, ok := e.(*config.Error)
		if !ok {
			t.Fatalf("parse error %q is a %T, not a *config.Error", e, e)
		}
		want := "config: "
		if ce.Path != "" {
			want += ce.Path + ": "
		}
		if !strings.HasPrefix(ce.Error(), want) || ce.Error() == want {
			t.Fatalf("error %q does not start with %q and say something", ce.Error(), want)
		}
		paths = append(paths, ce.Path)
	}
	if !slices.IsSorted(paths) {
		t.Fatalf("error paths not sorted: %q", paths)
	}
}

// fuzzEncodeConfig encodes cfg as the tree ParseConfig decodes (see
// config.Encode).
func fuzzEncodeConfig(t *testing.T, cfg *kernel.Config) map[string]any {
	t.Helper()
	m, err := config.Encode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
