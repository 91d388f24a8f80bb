package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/axonrpc/axon/kernel/config"
)

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "dev.yaml")
	if err := os.WriteFile(good, []byte("service: greeter\nclient: { conns_per_endpoint: 2 }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tree, err := config.Load(good, []string{"AXON_CLIENT__CONNS_PER_ENDPOINT=4", "HOME=/root"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"service": "greeter", "client": map[string]any{"conns_per_endpoint": "4"}}
	if !reflect.DeepEqual(tree, want) {
		t.Errorf("Load = %v, want %v", tree, want)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("service: greeter\n  client: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{bad, filepath.Join(dir, "missing.yaml")} {
		_, err := config.Load(path, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "config: "+path+": ") {
			t.Errorf("Load(%s) error %v does not name the file", path, err)
		}
	}
}

func TestLoadBytes(t *testing.T) {
	const doc = `
service: greeter
listen: [{ transport: tcp, address: "127.0.0.1:7443" }]
client: { conns_per_endpoint: 2, interceptors: [{ use: tracing }] }
server: { limits: { max_message: 4MiB } }
`
	cases := []struct {
		name string
		doc  string
		env  []string
		want map[string]any // nil: compare only wantErr
		err  string
	}{
		{name: "no env", doc: "a: 1", want: map[string]any{"a": 1}},
		{name: "empty document", doc: "", want: map[string]any{}},
		{name: "nested override and new keys", doc: "a: { b: 1, c: 2 }", env: []string{"AXON_A__B=3", "AXON_A__D__E=x", "AXON_F=y"},
			want: map[string]any{"a": map[string]any{"b": "3", "c": 2, "d": map[string]any{"e": "x"}}, "f": "y"}},
		{name: "single underscore stays in the key", doc: "", env: []string{"AXON_MAX_MESSAGE=1"},
			want: map[string]any{"max_message": "1"}},
		{name: "ignored variables", doc: "a: 1", env: []string{"AXON_A=", "AXON_B", "axon_c=1", "XAXON_D=1", "PATH=/bin"},
			want: map[string]any{"a": 1}},
		{name: "override replaces a list", doc: "a: [1, 2]", env: []string{"AXON_A__0=x"},
			want: map[string]any{"a": map[string]any{"0": "x"}}},
		{name: "value containing =", doc: "", env: []string{"AXON_A=b=c"}, want: map[string]any{"a": "b=c"}},
		{name: "syntax error names the document", doc: "a: [", err: "config: test.yaml: yaml: "},
		{name: "document is not a mapping", doc: "- a", err: "config: test.yaml: yaml: unmarshal errors"},
		{name: "empty segment", doc: "", env: []string{"AXON_A____B=1"}, err: "config: environment: AXON_A____B: empty key segment"},
		{name: "empty name", doc: "", env: []string{"AXON_=1"}, err: "config: environment: AXON_: empty key segment"},
		{name: "trailing separator", doc: "", env: []string{"AXON_A__=1"}, err: "config: environment: AXON_A__: empty key segment"},
		{name: "same key twice", doc: "", env: []string{"AXON_A=1", "AXON_a=2"}, err: "config: environment: AXON_A and AXON_a set the same key"},
		{name: "key and its parent", doc: "", env: []string{"AXON_A__B__C=1", "AXON_A__B=2"}, err: "config: environment: AXON_A__B and AXON_A__B__C both set a.b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tree, err := config.LoadBytes("test.yaml", []byte(c.doc), c.env)
			switch {
			case c.err != "":
				if err == nil || !strings.HasPrefix(err.Error(), c.err) {
					t.Errorf("error %v, want prefix %q", err, c.err)
				}
			case err != nil:
				t.Errorf("unexpected error %v", err)
			case !reflect.DeepEqual(tree, c.want):
				t.Errorf("tree %v, want %v", tree, c.want)
			}
		})
	}

	// End to end: environment strings decode into typed fields.
	root := defaultRoot()
	env := []string{"AXON_CLIENT__CONNS_PER_ENDPOINT=4", "AXON_SERVER__LIMITS__MAX_MESSAGE=8MiB", "AXON_SERVER__DRAIN_TIMEOUT=1s", "AXON_TLS__MODE=dev"}
	if err := config.Decode(load(t, doc, env...), "", &root); err != nil {
		t.Fatal(err)
	}
	if root.Client.ConnsPerEndpoint != 4 || root.Server.Limits.MaxMessage != 8<<20 || root.Server.DrainTimeout.String() != "1s" ||
		root.TLS.Mode != "dev" || len(root.Client.Interceptors) != 1 || root.Listen[0].Address != "127.0.0.1:7443" {
		t.Errorf("env overrides not applied: %+v", root)
	}

	// Bad environment values and list indexing fail at decode with full paths.
	root = defaultRoot()
	err := config.Decode(load(t, doc, "AXON_CLIENT__CONNS_PER_ENDPOINT=many", "AXON_LISTEN__0__ADDRESS=x", "AXON_CLIENT__TIMEOUT=5"), "", &root)
	want := []string{
		`config: client.conns_per_endpoint: expected an integer from 1 to 64, got "many"`,
		`config: client.timeout: expected a duration like "30s", got "5"`,
		`config: listen: expected a list, got a mapping`,
	}
	if !reflect.DeepEqual(lines(err), want) {
		t.Errorf("got %q\nwant %q", lines(err), want)
	}
}
