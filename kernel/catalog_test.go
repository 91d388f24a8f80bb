package kernel_test

import (
	"strings"
	"testing"

	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
)

type fakeConfig struct {
	Size int `yaml:"size" min:"1"`
}

type fakeCodec struct{ name string }

func (c fakeCodec) Name() string                            { return c.name }
func (fakeCodec) Marshal(dst []byte, _ any) ([]byte, error) { return dst, nil }
func (fakeCodec) Unmarshal([]byte, any) error               { return nil }

func fake(kind kernel.Kind, name string) kernel.Factory {
	return kernel.NewFactory(kind, name, func() fakeConfig { return fakeConfig{Size: 1} },
		func(_ kernel.BuildContext, _ fakeConfig) (kernel.Codec, error) { return fakeCodec{name}, nil })
}

func TestCatalog(t *testing.T) {
	cases := []struct {
		name      string
		factories []kernel.Factory
		lookup    kernel.Kind
		lookupOf  string
		wantErr   []string // substrings of NewCatalog's or Lookup's error; nil: success
	}{
		{
			name:      "found",
			factories: []kernel.Factory{fake(kernel.KindCodec, "proto"), fake(kernel.KindCodec, "json")},
			lookup:    kernel.KindCodec, lookupOf: "json",
		},
		{
			name:      "same name, other kind",
			factories: []kernel.Factory{fake(kernel.KindCodec, "x"), fake(kernel.KindTransport, "x")},
			lookup:    kernel.KindTransport, lookupOf: "x",
		},
		{
			name:      "unknown lists the known names, sorted",
			factories: []kernel.Factory{fake(kernel.KindCodec, "proto"), fake(kernel.KindCodec, "binary"), fake(kernel.KindTransport, "tcp")},
			lookup:    kernel.KindCodec, lookupOf: "jsno",
			wantErr: []string{`unknown codec plugin "jsno"`, "known: binary, proto"},
		},
		{
			name:      "unknown kind with none registered",
			factories: []kernel.Factory{fake(kernel.KindCodec, "proto")},
			lookup:    kernel.KindRegistry, lookupOf: "static",
			wantErr: []string{`unknown registry plugin "static"`, "no registry plugins are registered"},
		},
		{
			name:      "duplicate lists the registered names",
			factories: []kernel.Factory{fake(kernel.KindCodec, "proto"), fake(kernel.KindCodec, "json"), fake(kernel.KindCodec, "proto")},
			wantErr:   []string{`duplicate codec plugin "proto"`, "json, proto"},
		},
		{
			name:   "empty catalog",
			lookup: kernel.KindCodec, lookupOf: "proto",
			wantErr: []string{`unknown codec plugin "proto"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cat, err := kernel.NewCatalog(tc.factories)
			if err == nil && tc.lookup != "" {
				var f kernel.Factory
				f, err = cat.Lookup(tc.lookup, tc.lookupOf)
				if err == nil && (f.Name() != tc.lookupOf || f.Kind() != tc.lookup) {
					t.Fatalf("Lookup(%s, %s) = %s %s", tc.lookup, tc.lookupOf, f.Kind(), f.Name())
				}
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestCatalogNames(t *testing.T) {
	cat, err := kernel.NewCatalog([]kernel.Factory{fake(kernel.KindCodec, "b"), fake(kernel.KindCodec, "a"), fake(kernel.KindTransport, "tcp")})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cat.Names(kernel.KindCodec), ","); got != "a,b" {
		t.Errorf("Names(codec) = %s, want a,b", got)
	}
	if got := cat.Names(kernel.KindInterceptor); len(got) != 0 {
		t.Errorf("Names(interceptor) = %v, want none", got)
	}
}

// TestFactoryDecodesStrictly: a factory decodes its options over its
// defaults and reports bad keys and values by their full path.
func TestFactoryDecodesStrictly(t *testing.T) {
	f := fake(kernel.KindCodec, "c")
	cases := []struct {
		name string
		tree map[string]any
		want string // substring of the error; "" for success
	}{
		{"defaults", nil, ""},
		{"set", map[string]any{"size": 3}, ""},
		{"unknown key", map[string]any{"sise": 3}, "listen[0].options.sise"},
		{"bad value", map[string]any{"size": 0}, "listen[0].options.size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := f.Build(kernel.BuildContext{}, config.Raw{Path: "listen[0].options", Tree: tc.tree})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := inst.(kernel.Codec); !ok {
					t.Fatalf("built %T", inst)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}
