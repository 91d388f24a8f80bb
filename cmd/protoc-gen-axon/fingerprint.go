package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// schemaVersion starts every canonical schema: a change to the encoding
// changes every fingerprint.
const schemaVersion = "axon-binary/1"

// fingerprinter computes schema fingerprints: the first 8 bytes (big
// endian) of the SHA-256 of a message's canonical schema. The canonical
// schema lists, in field-number order, each field's number, name,
// cardinality, kind, oneof and explicit presence; an enum is named, a
// nested message is named with its fingerprint, a message that is being
// described further out (a recursive type) is named only. A message's own
// fingerprint is always computed from the top, so it does not depend on
// the order messages are generated in. So any change to
// what the encoding writes, or to a name, changes the fingerprint; adding
// an enum value does not.
type fingerprinter struct {
	acyclic map[protoreflect.FullName]uint64 // fingerprints of messages whose schema has no recursion
	stack   []protoreflect.FullName          // messages being described, outermost first
}

func newFingerprinter() *fingerprinter {
	return &fingerprinter{acyclic: map[protoreflect.FullName]uint64{}}
}

// fingerprint returns m's fingerprint.
func (c *fingerprinter) fingerprint(m *protogen.Message) uint64 {
	fp, _ := c.calc(m)
	return fp
}

// canonical returns m's canonical schema.
func (c *fingerprinter) canonical(m *protogen.Message) string {
	s, _ := c.describe(m)
	return s
}

// calc returns m's fingerprint, described within the messages on the
// stack, and whether its schema is recursive (refers to a message being
// described). Only the fingerprints of schemas without recursion are the
// same in every context, so only those are cached.
func (c *fingerprinter) calc(m *protogen.Message) (uint64, bool) {
	if fp, ok := c.acyclic[m.Desc.FullName()]; ok {
		return fp, false
	}
	s, recursive := c.describe(m)
	sum := sha256.Sum256([]byte(s))
	fp := binary.BigEndian.Uint64(sum[:8])
	if !recursive {
		c.acyclic[m.Desc.FullName()] = fp
	}
	return fp, recursive
}

func (c *fingerprinter) describe(m *protogen.Message) (string, bool) {
	depth := len(c.stack)
	c.stack = append(c.stack, m.Desc.FullName())
	defer func() { c.stack = c.stack[:depth] }()
	recursive := false
	var w strings.Builder
	fmt.Fprintf(&w, "%s message %s {\n", schemaVersion, m.Desc.FullName())
	for _, f := range byNumber(m.Fields) {
		card := "singular"
		switch {
		case f.Desc.IsMap():
			card = "map"
		case f.Desc.IsList():
			card = "repeated"
		}
		fmt.Fprintf(&w, "%d %s %s ", f.Desc.Number(), f.Desc.Name(), card)
		if f.Desc.IsMap() {
			k, v := f.Message.Fields[0], f.Message.Fields[1]
			fmt.Fprintf(&w, "<%s, %s>", c.typeOf(k, &recursive), c.typeOf(v, &recursive))
		} else {
			w.WriteString(c.typeOf(f, &recursive))
		}
		if isRealOneof(f) {
			fmt.Fprintf(&w, " oneof %s", f.Oneof.Desc.Name())
		} else if f.Desc.HasPresence() && f.Message == nil {
			w.WriteString(" optional")
		}
		w.WriteString("\n")
	}
	w.WriteString("}\n")
	return w.String(), recursive
}

// typeOf describes the type of f's values, setting *recursive when it
// refers to a message being described.
func (c *fingerprinter) typeOf(f *protogen.Field, recursive *bool) string {
	switch {
	case f.Enum != nil:
		return "enum " + string(f.Enum.Desc.FullName())
	case f.Message == nil:
		return f.Desc.Kind().String()
	}
	switch enc := encodingOf(f.Message); enc {
	case encTimestamp, encDuration:
		return enc.String()
	case encProto:
		return "proto " + string(f.Message.Desc.FullName())
	}
	name := f.Message.Desc.FullName()
	if slices.Contains(c.stack, name) {
		*recursive = true
		return "ref " + string(name)
	}
	fp, r := c.calc(f.Message)
	*recursive = *recursive || r
	return fmt.Sprintf("message %s %016x", name, fp)
}
