package config

import (
	"encoding"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Decode decodes tree into out, a non-nil pointer to a struct that already
// holds its defaults. path is the key path of tree, used as the prefix of
// every error path ("" at the root). Keys absent from tree, or set to null,
// keep out's defaults; a list replaces the default list, while a mapping
// decoded into a Go map adds to or overrides the default entries. Every
// problem found is reported: one as an *Error, several as an errors.Join of
// *Error values sorted by path. Validate methods run only on structs whose
// fields decoded without error.
func Decode(tree map[string]any, path string, out any) error {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: decode target must be a non-nil pointer to a struct, got %T", out)
	}
	var d decoder
	d.structure(path, tree, v.Elem())
	switch len(d.errs) {
	case 0:
		return nil
	case 1:
		return d.errs[0]
	}
	slices.SortStableFunc(d.errs, func(a, b error) int { return strings.Compare(pathOf(a), pathOf(b)) })
	return errors.Join(d.errs...)
}

// decoder collects the problems found in one Decode call.
type decoder struct{ errs []error }

// tags holds a field's validation tags; they apply to the field's scalar
// value, or to each element of a list, map or pointer.
type tags struct{ min, max, oneof string }

// field is one key of a struct, possibly promoted from an inline struct.
type field struct {
	name     string
	index    []int
	required bool
	tags     tags
}

var (
	rawType      = reflect.TypeFor[Raw]()
	sizeType     = reflect.TypeFor[Size]()
	durationType = reflect.TypeFor[Duration]()
	stdDuration  = reflect.TypeFor[time.Duration]()
	textType     = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (d *decoder) fail(path string, in any, expected string) {
	d.errs = append(d.errs, &Error{Path: path, Got: describe(in), Expected: expected})
}

func (d *decoder) failErr(path string, err error) {
	d.errs = append(d.errs, &Error{Path: path, Err: err})
}

// structure decodes the mapping m (nil when absent) into the struct v.
func (d *decoder) structure(path string, m map[string]any, v reflect.Value) {
	before := len(d.errs)
	fields := fieldsOf(v.Type())
	for _, f := range fields {
		in, p := m[f.name], joinPath(path, f.name)
		if f.required && empty(in) {
			d.failErr(p, errRequired)
			continue
		}
		d.value(p, in, v.FieldByIndex(f.index), f.tags)
	}
	for _, key := range sortedKeys(m) {
		if !slices.ContainsFunc(fields, func(f field) bool { return f.name == key }) {
			d.failErr(joinPath(path, key), unknownKey(path, fields))
		}
	}
	if len(d.errs) == before {
		d.validate(path, v)
	}
}

func unknownKey(path string, fields []field) error {
	at := " at " + path
	if path == "" {
		at = ""
	}
	if len(fields) == 0 {
		return fmt.Errorf("unknown key; no keys are known%s", at)
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return fmt.Errorf("unknown key; known keys%s: %s", at, strings.Join(names, ", "))
}

// validate calls v's Validate method, if any, and records its errors with
// relative paths made absolute.
func (d *decoder) validate(path string, v reflect.Value) {
	val, ok := v.Addr().Interface().(interface{ Validate() error })
	if !ok {
		return
	}
	for _, err := range flatten(val.Validate()) {
		var ce *Error
		switch {
		case !errors.As(err, &ce):
			d.failErr(path, err)
		case !ce.relative:
			d.errs = append(d.errs, err)
		case err == error(ce):
			c := *ce
			c.Path, c.relative = joinPath(path, ce.Path), false
			d.errs = append(d.errs, &c)
		default: // a wrapped relative *Error: keep the wrapper's message
			d.failErr(joinPath(path, ce.Path), err)
		}
	}
}

// flatten splits errors.Join trees into their leaves.
func flatten(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		if err == nil {
			return nil
		}
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}

// value decodes in into v, which is settable. A nil in (absent or null)
// leaves v unchanged, except that a plain struct still has its required keys
// and Validate checked.
func (d *decoder) value(path string, in any, v reflect.Value, t tags) {
	typ := v.Type()
	text := typ.Kind() != reflect.Pointer && reflect.PointerTo(typ).Implements(textType)
	if in == nil {
		if typ.Kind() == reflect.Struct && typ != rawType && !text {
			d.structure(path, nil, v)
		}
		return
	}
	switch {
	case typ == rawType:
		if m, ok := asMap(in); ok {
			v.Set(reflect.ValueOf(Raw{Path: path, Tree: m}))
		} else {
			d.fail(path, in, "a mapping")
		}
		return
	case typ == sizeType || typ == durationType || typ == stdDuration:
		d.number(path, in, v, t)
		return
	case text:
		d.text(path, in, v)
		return
	}
	switch typ.Kind() {
	case reflect.Pointer:
		p := reflect.New(typ.Elem())
		if !v.IsNil() {
			p.Elem().Set(v.Elem())
		}
		d.value(path, in, p.Elem(), t)
		v.Set(p)
	case reflect.Struct:
		if m, ok := asMap(in); ok {
			d.structure(path, m, v)
		} else {
			d.fail(path, in, "a mapping")
		}
	case reflect.Slice:
		list, ok := in.([]any)
		if !ok {
			d.fail(path, in, "a list")
			return
		}
		s := reflect.MakeSlice(typ, len(list), len(list))
		for i, e := range list {
			p := path + "[" + strconv.Itoa(i) + "]"
			if e == nil && scalar(typ.Elem()) {
				d.fail(p, e, "a value (null is not one)")
				continue
			}
			d.value(p, e, s.Index(i), t)
		}
		v.Set(s)
	case reflect.Map:
		m, ok := asMap(in)
		if typ.Key().Kind() != reflect.String {
			d.failErr(path, fmt.Errorf("unsupported field type %s", typ))
			return
		}
		if !ok {
			d.fail(path, in, "a mapping")
			return
		}
		out := reflect.MakeMapWithSize(typ, v.Len()+len(m))
		for it := v.MapRange(); it.Next(); {
			out.SetMapIndex(it.Key(), it.Value())
		}
		for _, key := range sortedKeys(m) {
			k, e := reflect.ValueOf(key).Convert(typ.Key()), reflect.New(typ.Elem()).Elem()
			if old := v.MapIndex(k); old.IsValid() {
				e.Set(old)
			}
			if m[key] == nil && scalar(typ.Elem()) {
				d.fail(path+"."+key, nil, "a value (null is not one)")
				continue
			}
			d.value(path+"."+key, m[key], e, t)
			out.SetMapIndex(k, e)
		}
		v.Set(out)
	case reflect.String:
		s, ok := in.(string)
		if !ok {
			d.fail(path, in, "a string")
		} else if allowed := strings.Fields(t.oneof); t.oneof != "" && !slices.Contains(allowed, s) {
			d.fail(path, in, "one of "+strings.Join(allowed, ", "))
		} else {
			v.SetString(s)
		}
	case reflect.Bool:
		b, ok := in.(bool)
		if s, isStr := in.(string); isStr {
			var err error
			b, err = strconv.ParseBool(s)
			ok = err == nil
		}
		if ok {
			v.SetBool(b)
		} else {
			d.fail(path, in, "true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		d.number(path, in, v, t)
	default:
		d.failErr(path, fmt.Errorf("unsupported field type %s", typ))
	}
}

// scalar reports whether t is decoded from a scalar: a null list element
// or map value of such a type is an error, where a null field keeps its
// default (its tags would not be checked on a zero value).
func scalar(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Struct, reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
		return false
	}
	return true
}

// text decodes a scalar through v's encoding.TextUnmarshaler.
func (d *decoder) text(path string, in any, v reflect.Value) {
	var s string
	switch x := in.(type) {
	case string:
		s = x
	case bool, int, int64, uint64, float64:
		s = describe(x)
	default:
		d.fail(path, in, "a string")
		return
	}
	if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
		d.errs = append(d.errs, &Error{Path: path, Got: describe(in), Expected: "a valid " + v.Type().String(), Err: err})
	}
}

// numeric describes how values of one numeric type are parsed and bounded.
type numeric struct {
	like     string                        // what is expected when no bound is shown
	noun     string                        // what is expected, before a range
	parse    func(in any) (*big.Rat, bool) // a YAML or environment value
	tag      func(s string) (*big.Rat, bool)
	lo, hi   *big.Rat // limits of the Go type; nil if none
	loS, hiS string   // the limits as shown in messages; "" hides one
}

// number decodes an integer, float, duration or size, enforcing the type's
// limits and the min and max tags.
func (d *decoder) number(path string, in any, v reflect.Value, t tags) {
	n := numericOf(v.Type())
	lo, hi, loS, hiS := n.lo, n.hi, n.loS, n.hiS
	if t.min != "" {
		b, ok := n.tag(t.min)
		if !ok {
			d.failErr(path, fmt.Errorf("invalid min tag %q for type %s", t.min, v.Type()))
			return
		}
		if lo == nil || b.Cmp(lo) >= 0 {
			lo, loS = b, t.min
		}
	}
	if t.max != "" {
		b, ok := n.tag(t.max)
		if !ok {
			d.failErr(path, fmt.Errorf("invalid max tag %q for type %s", t.max, v.Type()))
			return
		}
		if hi == nil || b.Cmp(hi) <= 0 {
			hi, hiS = b, t.max
		}
	}
	want := n.like
	switch {
	case loS != "" && hiS != "":
		want = n.noun + " from " + loS + " to " + hiS
	case loS == "0" && n.noun == "an integer":
		want = "a non-negative integer"
	case loS != "":
		want = n.noun + " of at least " + loS
	case hiS != "":
		want = n.noun + " of at most " + hiS
	}
	x, ok := n.parse(in)
	if !ok || (lo != nil && x.Cmp(lo) < 0) || (hi != nil && x.Cmp(hi) > 0) {
		d.fail(path, in, want)
		return
	}
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		f, _ := x.Float64()
		v.SetFloat(f)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(x.Num().Int64())
	default:
		v.SetUint(x.Num().Uint64())
	}
}

func numericOf(typ reflect.Type) numeric {
	ratInt := func(n int64) *big.Rat { return new(big.Rat).SetInt64(n) }
	switch typ {
	case durationType, stdDuration:
		dur := func(in any) (*big.Rat, bool) {
			s, ok := in.(string)
			d, err := time.ParseDuration(s)
			return ratInt(int64(d)), ok && err == nil
		}
		return numeric{like: `a duration like "30s"`, noun: "a duration", parse: dur,
			tag: func(s string) (*big.Rat, bool) { return dur(s) }}
	case sizeType:
		size := func(in any) (*big.Rat, bool) {
			if s, ok := in.(string); ok {
				n, ok := parseSize(s)
				return ratInt(int64(n)), ok
			}
			return integer(in)
		}
		return numeric{like: `a size like "4MiB"`, noun: "a size", parse: size,
			tag: func(s string) (*big.Rat, bool) { return size(s) },
			lo:  ratInt(0), hi: ratInt(math.MaxInt64)}
	}
	bits := uint(typ.Bits())
	switch typ.Kind() {
	case reflect.Float32, reflect.Float64:
		n := numeric{like: "a number", noun: "a number", parse: float,
			tag: func(s string) (*big.Rat, bool) { return float(s) }}
		if bits == 32 {
			n.lo, n.hi = new(big.Rat).SetFloat64(-math.MaxFloat32), new(big.Rat).SetFloat64(math.MaxFloat32)
			n.hiS = strconv.FormatFloat(math.MaxFloat32, 'g', -1, 32)
			n.loS = "-" + n.hiS
		}
		return n
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := numeric{like: "an integer", noun: "an integer", parse: integer,
			tag: func(s string) (*big.Rat, bool) { return integer(s) },
			lo:  ratInt(-1 << (bits - 1)), hi: new(big.Rat).SetInt(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), bits-1), big.NewInt(1)))}
		if bits < 64 {
			n.loS, n.hiS = n.lo.RatString(), n.hi.RatString()
		}
		return n
	default: // unsigned
		n := numeric{like: "an integer", noun: "an integer", parse: integer,
			tag: func(s string) (*big.Rat, bool) { return integer(s) },
			lo:  ratInt(0), hi: new(big.Rat).SetInt(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), bits), big.NewInt(1))),
			loS: "0"}
		if bits < 64 {
			n.hiS = n.hi.RatString()
		}
		return n
	}
}

// integer accepts a YAML integer or a base-10 integer string.
func integer(in any) (*big.Rat, bool) {
	if s, ok := in.(string); ok {
		i, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return nil, false
		}
		return new(big.Rat).SetInt(i), true
	}
	switch v := reflect.ValueOf(in); v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return new(big.Rat).SetInt64(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return new(big.Rat).SetUint64(v.Uint()), true
	}
	return nil, false
}

// float accepts a YAML number or a numeric string; the result is finite.
func float(in any) (*big.Rat, bool) {
	if r, ok := integer(in); ok {
		return r, true
	}
	var f float64
	switch x := in.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case string:
		var err error
		if f, err = strconv.ParseFloat(x, 64); err != nil {
			return nil, false
		}
	default:
		return nil, false
	}
	r := new(big.Rat).SetFloat64(f) // nil for NaN and infinities
	return r, r != nil
}

// fieldsOf lists the keys of struct type t in declaration order, flattening
// inline structs; a key declared at a shallower level wins over an inline one.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") && sf.Type.Kind() == reflect.Struct && (sf.IsExported() || sf.Anonymous) {
			for _, f := range fieldsOf(sf.Type) {
				f.index = append([]int{i}, f.index...)
				out = append(out, f)
			}
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = snake(sf.Name)
		}
		out = append(out, field{
			name: name, index: []int{i}, required: sf.Tag.Get("required") == "true",
			tags: tags{min: sf.Tag.Get("min"), max: sf.Tag.Get("max"), oneof: sf.Tag.Get("oneof")},
		})
	}
	// Drop shadowed duplicates, keeping the shallowest (then first) field.
	var keep []field
	for _, f := range out {
		if !slices.ContainsFunc(out, func(g field) bool {
			return g.name == f.name && (len(g.index) < len(f.index) || len(g.index) == len(f.index) && slices.Compare(g.index, f.index) < 0)
		}) {
			keep = append(keep, f)
		}
	}
	return keep
}

// snake converts a Go field name to snake_case: MaxMessage -> max_message,
// CAFile -> ca_file, HTTP2 -> http2.
func snake(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]) ||
			unicode.IsUpper(r[i-1]) && i+1 < len(r) && unicode.IsLower(r[i+1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// asMap returns in as a mapping with string keys.
func asMap(in any) (map[string]any, bool) {
	switch m := in.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[fmt.Sprint(k)] = v
		}
		return out, true
	}
	return nil, false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// empty reports whether a required key counts as missing.
func empty(in any) bool {
	switch x := in.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	case map[any]any:
		return len(x) == 0
	}
	return false
}

// describe formats a tree value for an error message.
func describe(in any) string {
	switch x := in.(type) {
	case nil:
		return "null"
	case string:
		if utf8.RuneCountInString(x) > 64 {
			x = string([]rune(x)[:64]) + "..."
		}
		return strconv.Quote(x)
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	case float64:
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eIN") {
			s += ".0"
		}
		return s
	}
	return fmt.Sprint(in)
}

func pathOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Path
	}
	return ""
}
