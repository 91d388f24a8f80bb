package config_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/axonrpc/axon/kernel/config"
)

// fuzzMaxDoc bounds the documents the fuzz targets load: a larger one
// only spends the budget in the YAML parser. (Alias bombs are refused by
// the parser, "document contains excessive aliasing", well below it.)
const fuzzMaxDoc = 64 << 10

// FuzzLoadDecode loads a YAML document and environment overrides (one
// variable a line) with LoadBytes and decodes the tree with Decode, as a
// process loads its configuration. Neither may panic; a load error names
// the file or the environment; a decode error is one *Error or several
// joined, each naming its key path under the path given to Decode, sorted
// by path; a document that decodes is re-encoded as a tree (sizes and
// durations as strings) that decodes to the same value.
func FuzzLoadDecode(f *testing.F) {
	seeds := []struct{ doc, env string }{
		{"service: greeter\nlisten: [{ transport: tcp, address: a, tls: { mode: off } }]", ""},
		{"service: s\nserver: { limits: { max_message: 1.5MiB, max_streams: 7 }, drain_timeout: 1.5s }\nclient: { timeout: 250ms }", "AXON_SERVER__LIMITS__MAX_MESSAGE=64KB"},
		{"service: s\nregistry: { use: static, options: { endpoints: { echo: [a, 1, null] } } }", "AXON_CODEC=json\nAXON_CLIENT__CONNS_PER_ENDPOINT=9"},
		{"service: s\nserver: { limits: { max_message: 1GiB } }", "AXON_SERVER__LIMITS__MAX_MESSAGE=1073741825"},
		{"service: s\nserver: { limits: { max_message: 0.5B } }", ""},
		{"service: s\ntls: { mode: mutual }", ""},
		{"a: &x [*x]", ""},
		{"service: [unclosed", ""},
		{"service: s\n\tbad: indent", ""},
		{"service: s", "AXON_A____B=1\nAXON_A=1\nAXON_A__B=2"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.doc), s.env)
	}
	f.Fuzz(func(t *testing.T, doc []byte, env string) {
		if len(doc) > fuzzMaxDoc || len(env) > 4<<10 {
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
		root := defaultRoot()
		err = config.Decode(tree, "", &root)
		fuzzCheckError(t, err, "")
		if err == nil {
			again := defaultRoot()
			if err := config.Decode(fuzzEncode(t, &root), "", &again); err != nil {
				t.Fatalf("a decoded configuration, re-encoded, does not decode: %v", err)
			}
			if !reflect.DeepEqual(root, again) {
				t.Fatalf("a decoded configuration, re-encoded, decodes to\n%+v\nnot\n%+v", again, root)
			}
		}
		// Every kind of field, below a path.
		fuzzCheckError(t, config.Decode(tree, "at[1].x", &Kinds{}), "at[1].x")
	})
}

// fuzzCheckError checks that err, from Decode with path, is one *Error or
// several joined, sorted by path, each naming its key path (path or below
// it) as its message's prefix.
func fuzzCheckError(t *testing.T, err error, path string) {
	t.Helper()
	if err == nil {
		return
	}
	leaves := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		leaves = j.Unwrap()
		if len(leaves) < 2 {
			t.Fatalf("a joined error of %d errors: %v", len(leaves), err)
		}
	}
	var paths []string
	for _, e := range leaves {
		ce, ok := e.(*config.Error)
		if !ok {
			t.Fatalf("decode error %q is a %T, not a *config.Error", e, e)
		}
		if ce.Path != path && !strings.HasPrefix(ce.Path, path+".") && !strings.HasPrefix(ce.Path, path+"[") && path != "" {
			t.Fatalf("error path %q is not under %q", ce.Path, path)
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

// fuzzEncode encodes the configuration struct v points to (see Encode).
func fuzzEncode(t *testing.T, v any) map[string]any {
	t.Helper()
	m, err := config.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
