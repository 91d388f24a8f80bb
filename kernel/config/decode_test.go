package config_test

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel/config"
)

// load parses doc with the given environment and fails the test on a load error.
func load(t *testing.T, doc string, env ...string) map[string]any {
	t.Helper()
	tree, err := config.LoadBytes("test.yaml", []byte(doc), env)
	if err != nil {
		t.Fatalf("LoadBytes: %v", err)
	}
	return tree
}

func ptr[T any](v T) *T { return &v }

func TestDecodeKinds(t *testing.T) {
	doc := `
flat: f
s: str
b: true
i: -5
i8: -128
i16: 32767
i32: -7
i64: 9223372036854775807
u: 5
u8: 255
u16: 65535
u32: 7
u64: 18446744073709551615
f32: 1.5
f64: 3
d: 1.5s
cd: 250ms
size: 4MiB
pi: 9
ps: hello
pt: { mode: dev }
li: [1, 2, 3]
ls: [a, b]
lt: [{ mode: off }, { mode: dev, ca_file: ca.pem }]
mi: { a: 1, b: 2 }
ml: { a: [1], b: [] }
mt: { x: { mode: dev } }
addr: 10.0.0.1
paddr: "::1"
laddr: [127.0.0.1]
raw: { anything: [1, { goes: here }] }
named: fast
nest: { x: 1, y: 2 }
http_port: 8080
ca_file: ca.pem
`
	var got Kinds
	if err := config.Decode(load(t, doc), "", &got); err != nil {
		t.Fatal(err)
	}
	want := Kinds{
		Inline: Inline{Flat: "f"},
		S:      "str", B: true, I: -5, I8: -128, I16: 32767, I32: -7, I64: 1<<63 - 1,
		U: 5, U8: 255, U16: 65535, U32: 7, U64: 1<<64 - 1, F32: 1.5, F64: 3,
		D: 1500 * time.Millisecond, CD: config.Duration(250 * time.Millisecond), Size: 4 << 20,
		PI: ptr(9), PS: ptr("hello"), PT: &TLS{Mode: "dev"},
		LI: []int{1, 2, 3}, LS: []string{"a", "b"}, LT: []TLS{{Mode: "off"}, {Mode: "dev", CAFile: "ca.pem"}},
		MI: map[string]int{"a": 1, "b": 2}, ML: map[string][]int{"a": {1}, "b": {}}, MT: map[string]TLS{"x": {Mode: "dev"}},
		Addr: netip.MustParseAddr("10.0.0.1"), PAddr: ptr(netip.MustParseAddr("::1")), LAddr: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Raw:   config.Raw{Path: "raw", Tree: map[string]any{"anything": []any{1, map[string]any{"goes": "here"}}}},
		Named: "fast", Nest: struct{ X, Y int }{1, 2},
		HTTPPort: 8080, CAFile: "ca.pem",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode:\n got %+v\nwant %+v", got, want)
	}
}

// TestDecodeStrings checks that every scalar kind also accepts the string
// form an environment variable would give.
func TestDecodeStrings(t *testing.T) {
	tree := map[string]any{
		"b": "false", "i": "-42", "i8": "-128", "u64": "18446744073709551615", "f32": "2.5", "f64": "1e3",
		"d": "2m", "cd": "1h", "size": "512KiB", "pi": "3", "addr": "::2",
	}
	got := Kinds{B: true}
	if err := config.Decode(tree, "", &got); err != nil {
		t.Fatal(err)
	}
	want := Kinds{I: -42, I8: -128, U64: 1<<64 - 1, F32: 2.5, F64: 1000, D: 2 * time.Minute,
		CD: config.Duration(time.Hour), Size: 512 << 10, PI: ptr(3), Addr: netip.MustParseAddr("::2")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode:\n got %+v\nwant %+v", got, want)
	}
}

func TestDecodeDefaults(t *testing.T) {
	doc := `
service: greeter
tls: { ca_file: ca.pem }   # mode keeps its default
client: { timeout: null }  # null keeps the default
server: { limits: { max_streams: 10 } }
`
	got := defaultRoot()
	if err := config.Decode(load(t, doc), "", &got); err != nil {
		t.Fatal(err)
	}
	want := defaultRoot()
	want.Service, want.TLS.CAFile, want.Server.Limits.MaxStreams = "greeter", "ca.pem", 10
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode:\n got %+v\nwant %+v", got, want)
	}

	// An empty tree keeps every default, including pointers, lists and maps,
	// and decoding never writes through a default pointer or map.
	pi, mi := ptr(1), map[string]int{"a": 1, "b": 2}
	k := Kinds{PI: pi, LI: []int{1}, MI: mi}
	if err := config.Decode(nil, "", &k); err != nil {
		t.Fatal(err)
	}
	if k.PI != pi || !reflect.DeepEqual(k.LI, []int{1}) || !reflect.DeepEqual(k.MI, mi) {
		t.Errorf("empty tree changed defaults: %+v", k)
	}
	if err := config.Decode(map[string]any{"pi": 2, "mi": map[string]any{"b": 3}}, "", &k); err != nil {
		t.Fatal(err)
	}
	if *pi != 1 || *k.PI != 2 || !reflect.DeepEqual(mi, map[string]int{"a": 1, "b": 2}) || !reflect.DeepEqual(k.MI, map[string]int{"a": 1, "b": 3}) {
		t.Errorf("defaults mutated or not merged: pi=%d k.PI=%d mi=%v k.MI=%v", *pi, *k.PI, mi, k.MI)
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		want []string
	}{
		{"unknown root key", "service: s\nservise: s", []string{
			`config: servise: unknown key; known keys: service, listen, codec, tls, registry, client, server`}},
		{"unknown nested key", "service: s\nserver: { limts: {} }", []string{
			`config: server.limts: unknown key; known keys at server: interceptors, limits, drain_timeout`}},
		{"unknown key in list element", "service: s\nlisten: [{ transport: tcp, address: a, tsl: {} }]", []string{
			`config: listen[0].tsl: unknown key; known keys at listen[0]: transport, address, protocols, tls`}},
		{"keys are case sensitive", "Service: s", []string{
			`config: Service: unknown key; known keys: service, listen, codec, tls, registry, client, server`,
			`config: service: required`}},
		{"int from float", "service: s\nclient: { conns_per_endpoint: 2.0 }", []string{
			`config: client.conns_per_endpoint: expected an integer from 1 to 64, got 2.0`}},
		{"int from bad string", "service: s\nclient: { conns_per_endpoint: four }", []string{
			`config: client.conns_per_endpoint: expected an integer from 1 to 64, got "four"`}},
		{"int range", "service: s\nclient: { conns_per_endpoint: 65 }", []string{
			`config: client.conns_per_endpoint: expected an integer from 1 to 64, got 65`}},
		{"uint min only", "service: s\nserver: { limits: { max_streams: 0 } }", []string{
			`config: server.limits.max_streams: expected an integer from 1 to 4294967295, got 0`}},
		{"mapping for scalar", "service: { name: s }", []string{
			`config: service: expected a string, got a mapping`}},
		{"number for string", "service: 42", []string{
			`config: service: expected a string, got 42`}},
		{"scalar for list", "service: s\nlisten: tcp", []string{
			`config: listen: expected a list, got "tcp"`}},
		{"list for struct", "service: s\ntls: [off]", []string{
			`config: tls: expected a mapping, got a list`}},
		{"scalar for raw", "service: s\nregistry: { use: x, options: 3 }", []string{
			`config: registry.options: expected a mapping, got 3`}},
		{"oneof", "service: s\ntls: { mode: mutal }", []string{
			`config: tls.mode: expected one of off, dev, mutual, got "mutal"`}},
		{"oneof on list elements", "service: s\nlisten: [{ transport: tcp, address: a, protocols: [axon, http] }]", []string{
			`config: listen[0].protocols[1]: expected one of axon, grpc, grpc-web, got "http"`}},
		{"required missing", "codec: proto", []string{`config: service: required`}},
		{"required empty", "service: ''", []string{`config: service: required`}},
		{"required null", "service: null", []string{`config: service: required`}},
		{"required in absent struct", "service: s\nregistry: { options: {} }", []string{`config: registry.use: required`}},
		{"required in list element", "service: s\nlisten: [{ transport: tcp }]", []string{`config: listen[0].address: required`}},
		{"duration from number", "service: s\nserver: { drain_timeout: 30 }", []string{
			`config: server.drain_timeout: expected a duration from 1ms to 1m, got 30`}},
		{"duration range", "service: s\nserver: { drain_timeout: 2m }", []string{
			`config: server.drain_timeout: expected a duration from 1ms to 1m, got "2m"`}},
		{"duration syntax", "service: s\nclient: { timeout: 5 sec }", []string{
			`config: client.timeout: expected a duration like "30s", got "5 sec"`}},
		{"size syntax", "service: s\nserver: { limits: { max_message: 4 MB } }", []string{
			`config: server.limits.max_message: expected a size from 1KiB to 1GiB, got "4 MB"`}},
		{"size range", "service: s\nserver: { limits: { max_message: 2GiB } }", []string{
			`config: server.limits.max_message: expected a size from 1KiB to 1GiB, got "2GiB"`}},
		{"validate relative path", "service: s\ntls: { mode: mutual }", []string{
			`config: tls.ca_file: expected a CA file when mode is mutual, got ""`}},
		{"validate relative path in list", "service: s\nlisten: [{ transport: tcp, address: a }, { transport: uds, address: b, tls: { mode: mutual } }]", []string{
			`config: listen[1].tls.ca_file: expected a CA file when mode is mutual, got ""`}},
		{"validate plain error at root", "service: s\ncodec: json\nclient: { conns_per_endpoint: 9 }", []string{
			`config: the json codec supports at most 8 connections per endpoint`}},
		{"validate skipped after field errors", "service: s\ncodec: json\nclient: { conns_per_endpoint: 9, timeout: x }", []string{
			`config: client.timeout: expected a duration like "30s", got "x"`}},
		{"all errors at once, sorted", `
servce: s
listen: [{ transport: tcp, address: a, port: 1 }]
tls: { mode: none }
client: { conns_per_endpoint: 0, interceptors: [{ use: retry }, { options: {} }] }
server: { drain_timeout: 1 }
`, []string{
			`config: client.conns_per_endpoint: expected an integer from 1 to 64, got 0`,
			`config: client.interceptors[1].use: required`,
			`config: listen[0].port: unknown key; known keys at listen[0]: transport, address, protocols, tls`,
			`config: servce: unknown key; known keys: service, listen, codec, tls, registry, client, server`,
			`config: server.drain_timeout: expected a duration from 1ms to 1m, got 1`,
			`config: service: required`,
			`config: tls.mode: expected one of off, dev, mutual, got "none"`,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := defaultRoot()
			err := config.Decode(load(t, c.doc), "", &got)
			if !reflect.DeepEqual(lines(err), c.want) {
				t.Errorf("Decode errors:\n got %q\nwant %q", lines(err), c.want)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("error %v is not a *config.Error", err)
			}
		})
	}
}

func TestDecodeKindErrors(t *testing.T) {
	cases := []struct {
		name string
		tree map[string]any
		want string
	}{
		{"bool", map[string]any{"b": "yes"}, `config: b: expected true or false, got "yes"`},
		{"bool from int", map[string]any{"b": 1}, `config: b: expected true or false, got 1`},
		{"int8 overflow", map[string]any{"i8": 128}, `config: i8: expected an integer from -128 to 127, got 128`},
		{"int8 overflow string", map[string]any{"i8": "-129"}, `config: i8: expected an integer from -128 to 127, got "-129"`},
		{"int64 overflow", map[string]any{"i64": uint64(1 << 63)}, `config: i64: expected an integer, got 9223372036854775808`},
		{"int not octal-ish", map[string]any{"i": "0x10"}, `config: i: expected an integer, got "0x10"`},
		{"int from bool", map[string]any{"i": true}, `config: i: expected an integer, got true`},
		{"negative uint", map[string]any{"u": -1}, `config: u: expected a non-negative integer, got -1`},
		{"negative uint string", map[string]any{"u64": "-1"}, `config: u64: expected a non-negative integer, got "-1"`},
		{"uint8 overflow", map[string]any{"u8": 256}, `config: u8: expected an integer from 0 to 255, got 256`},
		{"float32 overflow", map[string]any{"f32": 1e39}, `config: f32: expected a number from -3.4028235e+38 to 3.4028235e+38, got 1e+39`},
		{"float from string", map[string]any{"f64": "fast"}, `config: f64: expected a number, got "fast"`},
		{"float nan", map[string]any{"f64": "NaN"}, `config: f64: expected a number, got "NaN"`},
		{"negative size", map[string]any{"size": -1}, `config: size: expected a size like "4MiB", got -1`},
		{"size from float", map[string]any{"size": 1.5}, `config: size: expected a size like "4MiB", got 1.5`},
		{"pointer element", map[string]any{"pi": "x"}, `config: pi: expected an integer, got "x"`},
		{"list element", map[string]any{"li": []any{1, "two"}}, `config: li[1]: expected an integer, got "two"`},
		{"map value", map[string]any{"mi": map[string]any{"a": 1.5}}, `config: mi.a: expected an integer, got 1.5`},
		{"map of lists", map[string]any{"ml": map[string]any{"a": []any{1, map[string]any{}}}}, `config: ml.a[1]: expected an integer, got a mapping`},
		{"map of structs", map[string]any{"mt": map[string]any{"x": map[string]any{"mode": "on"}}}, `config: mt.x.mode: expected one of off, dev, mutual, got "on"`},
		{"map for list", map[string]any{"ls": map[string]any{"0": "a"}}, `config: ls: expected a list, got a mapping`},
		{"text unmarshaler", map[string]any{"addr": "10.0.0"}, `config: addr: expected a valid netip.Addr, got "10.0.0": ParseAddr("10.0.0"): IPv4 address too short`},
		{"text unmarshaler list", map[string]any{"addr": []any{}}, `config: addr: expected a string, got a list`},
		{"nested struct", map[string]any{"nest": map[string]any{"z": 1}}, `config: nest.z: unknown key; known keys at nest: x, y`},
		{"skipped field", map[string]any{"skipped": 1}, `config: skipped: unknown key; known keys: flat, s, b, i, i8, i16, i32, i64, u, u8, u16, u32, u64, f32, f64, d, cd, size, pi, ps, pt, li, ls, lt, mi, ml, mt, addr, paddr, laddr, raw, named, nest, http_port, ca_file`},
		{"long value truncated", map[string]any{"i": strings.Repeat("9", 100)}, `config: i: expected an integer, got "` + strings.Repeat("9", 64) + `..."`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var k Kinds
			err := config.Decode(c.tree, "", &k)
			if err == nil || err.Error() != c.want {
				t.Errorf("Decode error:\n got %v\nwant %s", err, c.want)
			}
		})
	}
}

func TestDecodePathPrefixAndTarget(t *testing.T) {
	var tls TLS
	err := config.Decode(map[string]any{"mode": "x"}, "listen[3].tls", &tls)
	if want := `config: listen[3].tls.mode: expected one of off, dev, mutual, got "x"`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	for _, out := range []any{nil, tls, (*TLS)(nil), new(int)} {
		if err := config.Decode(nil, "x", out); err == nil || !strings.HasPrefix(err.Error(), "config: decode target must be") {
			t.Errorf("Decode into %T: got %v", out, err)
		}
	}
}

func TestDecodeBadTags(t *testing.T) {
	var bad struct {
		N int         `yaml:"n" min:"one"`
		S config.Size `yaml:"s" max:"lots"`
		C chan int    `yaml:"c"`
		M map[int]int `yaml:"m"`
	}
	err := config.Decode(map[string]any{"n": 1, "s": 1, "c": 1, "m": map[string]any{}}, "", &bad)
	want := []string{
		`config: c: unsupported field type chan int`,
		`config: m: unsupported field type map[int]int`,
		`config: n: invalid min tag "one" for type int`,
		`config: s: invalid max tag "lots" for type config.Size`,
	}
	if !reflect.DeepEqual(lines(err), want) {
		t.Errorf("got %q\nwant %q", lines(err), want)
	}
}

func TestRawDeferredDecode(t *testing.T) {
	doc := `
service: s
registry: { use: static, options: { endpoints: { echo: ["127.0.0.1:7443", 5] } } }
client:
  interceptors:
    - { use: tracing }
    - { use: retry, options: { max_attempts: 3, budget_ratio: 0.2 } }
    - { use: retry, options: { max_attempts: 11, budget_ratio: 0.2, jitter: 1 } }
    - { use: retry, options: { max_attempts: 7, budget_ratio: 0.5 } }
`
	root := defaultRoot()
	if err := config.Decode(load(t, doc), "", &root); err != nil {
		t.Fatal(err)
	}
	if !root.Client.Interceptors[0].Options.IsZero() || root.Registry.Options.IsZero() {
		t.Error("IsZero is wrong")
	}

	var static StaticRegistry
	err := root.Registry.Options.Decode(&static)
	if want := `config: registry.options.endpoints.echo[1]: expected a string, got 5`; err == nil || err.Error() != want {
		t.Errorf("registry: got %v, want %s", err, want)
	}

	cases := []struct {
		want []string
		cfg  Retry
	}{
		{nil, Retry{MaxAttempts: 1}}, // tracing has no options: defaults stay
		{nil, Retry{MaxAttempts: 3, BudgetRatio: 0.2}},
		{[]string{
			`config: client.interceptors[2].options.jitter: unknown key; known keys at client.interceptors[2].options: max_attempts, budget_ratio`,
			`config: client.interceptors[2].options.max_attempts: expected an integer from 1 to 10, got 11`,
		}, Retry{MaxAttempts: 1, BudgetRatio: 0.2}}, // valid keys still decode
		{[]string{
			`config: client.interceptors[3].options: expected a less round budget, got budget_ratio 0.5`,
			`config: client.interceptors[3].options.max_attempts: expected anything but 7, got 7`,
		}, Retry{MaxAttempts: 7, BudgetRatio: 0.5}},
	}
	for i, c := range cases {
		cfg := Retry{MaxAttempts: 1}
		err := root.Client.Interceptors[i].Options.Decode(&cfg)
		if !reflect.DeepEqual(lines(err), c.want) || cfg != c.cfg {
			t.Errorf("interceptor %d: got %q %+v, want %q %+v", i, lines(err), cfg, c.want, c.cfg)
		}
	}
}

// A Validate error that wraps a relative FieldError keeps the wrapper's
// message under the absolute path.
type wrapping struct{ N int }

func (w *wrapping) Validate() error {
	return errors.Join(
		errors.Join(config.FieldError("n", "1", "2")),
		&config.Error{Path: "elsewhere", Expected: "absolute"},
		wrapErr{config.FieldError("n", "3", "4")},
	)
}

type wrapErr struct{ err error }

func (w wrapErr) Error() string { return "wrapped: " + w.err.Error() }
func (w wrapErr) Unwrap() error { return w.err }

func TestValidateErrorShapes(t *testing.T) {
	var w struct {
		W wrapping `yaml:"w"`
	}
	err := config.Decode(nil, "root", &w)
	want := []string{
		`config: elsewhere: expected absolute`,
		`config: root.w.n: expected 2, got 1`,
		`config: root.w.n: wrapped: config: n: expected 4, got 3`,
	}
	if !reflect.DeepEqual(lines(err), want) {
		t.Errorf("got %q\nwant %q", lines(err), want)
	}
}

func TestInlineShadowing(t *testing.T) {
	type inner struct {
		A string `yaml:"a"`
		B string `yaml:"b"`
	}
	var v struct {
		inner `yaml:",inline"`
		B     string `yaml:"b"`
	}
	if err := config.Decode(map[string]any{"a": "1", "b": "2"}, "", &v); err != nil {
		t.Fatal(err)
	}
	if v.A != "1" || v.B != "2" || v.inner.B != "" {
		t.Errorf("got %+v", v)
	}
}
