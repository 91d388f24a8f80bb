package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

var textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()

// Encode returns the tree that Decode would decode into the struct v
// points to, as it holds now: keys from the yaml tags, sizes and durations
// in their String forms, Raw blocks as their trees, inline structs merged;
// nil pointers, lists and maps are left out, and so are zero values that
// their field's tags refuse (such a field was never set). Decode(Encode(v)) gives v
// back. It fails on a field without a yaml tag or of a kind config does
// not decode.
func Encode(v any) (map[string]any, error) {
	m, err := encodeValue(reflect.ValueOf(v).Elem())
	if err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	out, _ := m.(map[string]any)
	return out, nil
}

func encodeValue(v reflect.Value) (any, error) {
	typ := v.Type()
	switch {
	case typ == rawType:
		if raw := v.Interface().(Raw); raw.Tree != nil {
			return raw.Tree, nil
		}
		return nil, nil
	case typ == sizeType:
		return Size(v.Int()).String(), nil
	case typ == durationType || typ == stdDuration:
		return time.Duration(v.Int()).String(), nil
	case typ.Kind() != reflect.Pointer && typ.Implements(textMarshalerType):
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		return string(b), err
	}
	switch typ.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil, nil
		}
		return encodeValue(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		for i := range typ.NumField() {
			sf := typ.Field(i)
			name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if !sf.IsExported() || name == "-" {
				continue
			}
			e, err := encodeValue(v.Field(i))
			if err != nil {
				return nil, err
			}
			if v.Field(i).IsZero() && refusesZero(sf, e) {
				// A zero the field's own tags refuse (a oneof without "",
				// a min above zero) was never set: the key was absent or
				// null. Left out, it decodes to the same zero.
				continue
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
			e, err := encodeValue(v.Index(i))
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
			e, err := encodeValue(it.Value())
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

// refusesZero reports whether the tags of field sf refuse e, the encoding
// of its zero value.
func refusesZero(sf reflect.StructField, e any) bool {
	t := tags{min: sf.Tag.Get("min"), max: sf.Tag.Get("max"), oneof: sf.Tag.Get("oneof")}
	if t == (tags{}) {
		return false
	}
	var d decoder
	d.value("", e, reflect.New(sf.Type).Elem(), t)
	return len(d.errs) > 0
}
