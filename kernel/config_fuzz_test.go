package kernel_test

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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

var (
	fuzzSizeType     = reflect.TypeFor[config.Size]()
	fuzzDurationType = reflect.TypeFor[config.Duration]()
	fuzzStdDuration  = reflect.TypeFor[time.Duration]()
	fuzzRawType      = reflect.TypeFor[config.Raw]()
	fuzzTextType     = reflect.TypeFor[encoding.TextMarshaler]()
)

// fuzzEncodeConfig encodes cfg as a tree that config.Decode accepts: keys
// from the yaml tags, sizes and durations as their String forms, Raw
// blocks as their trees; nil pointers, lists and maps are left out.
func fuzzEncodeConfig(t *testing.T, cfg *kernel.Config) map[string]any {
	t.Helper()
	m, err := fuzzEncodeValue(reflect.ValueOf(cfg).Elem())
	if err != nil {
		t.Fatal(err)
	}
	return m.(map[string]any)
}

func fuzzEncodeValue(v reflect.Value) (any, error) {
	typ := v.Type()
	switch {
	case typ == fuzzRawType:
		if raw := v.Interface().(config.Raw); raw.Tree != nil {
			return raw.Tree, nil
		}
		return nil, nil
	case typ == fuzzSizeType:
		return config.Size(v.Int()).String(), nil
	case typ == fuzzDurationType || typ == fuzzStdDuration:
		return time.Duration(v.Int()).String(), nil
	case typ.Kind() != reflect.Pointer && typ.Implements(fuzzTextType):
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		return string(b), err
	}
	switch typ.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil, nil
		}
		return fuzzEncodeValue(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		for i := range typ.NumField() {
			sf := typ.Field(i)
			name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if !sf.IsExported() || name == "-" {
				continue
			}
			e, err := fuzzEncodeValue(v.Field(i))
			if err != nil {
				return nil, err
			}
			if slices.Contains(strings.Split(opts, ","), "inline") {
				for k, x := range e.(map[string]any) {
					m[k] = x
				}
				continue
			}
			if name == "" {
				return nil, fmt.Errorf("field %s.%s has no yaml tag", typ, sf.Name)
			}
			if e != nil {
				m[name] = e
			}
		}
		return m, nil
	case reflect.Slice:
		if v.IsNil() {
			return nil, nil
		}
		l := make([]any, v.Len())
		for i := range l {
			e, err := fuzzEncodeValue(v.Index(i))
			if err != nil {
				return nil, err
			}
			l[i] = e
		}
		return l, nil
	case reflect.Map:
		if v.IsNil() {
			return nil, nil
		}
		m := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			e, err := fuzzEncodeValue(it.Value())
			if err != nil {
				return nil, err
			}
			m[it.Key().String()] = e
		}
		return m, nil
	case reflect.String:
		return v.String(), nil
	case reflect.Bool:
		return v.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint(), nil
	case reflect.Float32, reflect.Float64:
		return v.Float(), nil
	}
	return nil, errors.New("cannot encode a " + typ.String())
}

// fuzzLookup finds the value at a key path ("a.b[2].c") in a tree; keys
// may hold dots, so every key that fits is tried.
func fuzzLookup(node any, path string) (any, bool) {
	if path == "" {
		return node, true
	}
	switch n := node.(type) {
	case []any:
		end := strings.IndexByte(path, ']')
		if path[0] != '[' || end < 0 {
			return nil, false
		}
		i, err := strconv.Atoi(path[1:end])
		if err != nil || i < 0 || i >= len(n) {
			return nil, false
		}
		rest := path[end+1:]
		if r, ok := strings.CutPrefix(rest, "."); ok && r != "" && r[0] != '[' {
			rest = r
		}
		return fuzzLookup(n[i], rest)
	case map[string]any:
		for k, v := range n {
			if rest, ok := strings.CutPrefix(path, k); ok && (rest == "" || rest[0] == '.' || rest[0] == '[') {
				if rest != "" && rest[0] == '.' {
					rest = rest[1:]
				}
				if found, ok := fuzzLookup(v, rest); ok {
					return found, true
				}
			}
		}
	case map[any]any:
		m := make(map[string]any, len(n))
		for k, v := range n {
			m[fmt.Sprint(k)] = v
		}
		return fuzzLookup(m, path)
	}
	return nil, false
}
