package config_test

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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

var (
	fuzzSizeType        = reflect.TypeFor[config.Size]()
	fuzzDurationType    = reflect.TypeFor[config.Duration]()
	fuzzStdDurationType = reflect.TypeFor[time.Duration]()
	fuzzRawType         = reflect.TypeFor[config.Raw]()
	fuzzTextType        = reflect.TypeFor[encoding.TextMarshaler]()
)

// fuzzEncode encodes the configuration struct v points to as a tree that
// Decode accepts: keys from the yaml tags, sizes and durations as their
// String forms, Raw blocks as their trees; nil pointers, lists and maps
// are left out. Fields must be tagged.
func fuzzEncode(t *testing.T, v any) map[string]any {
	t.Helper()
	m, err := fuzzEncodeValue(reflect.ValueOf(v).Elem())
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
	case typ == fuzzDurationType || typ == fuzzStdDurationType:
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
