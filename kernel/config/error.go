package config

import (
	"errors"
	"strings"
)

// Error describes one problem with one configuration key. Decode returns an
// *Error for a single problem and an errors.Join of *Error values, sorted by
// Path, for several.
type Error struct {
	// Path is the full key path, such as "listen[0].address"; "" is the root.
	Path string
	// Got is the offending value as shown to the user (strings are quoted).
	Got string
	// Expected says in words what would have been accepted.
	Expected string
	// Err is the underlying cause, if any.
	Err error

	relative bool // Path is relative to the struct whose Validate returned it
}

// FieldError returns an *Error for use in Validate methods. field is the key
// path relative to the validated struct ("" for the struct itself); Decode
// prefixes it with the struct's own path. got is shown verbatim, so quote
// strings with %q.
func FieldError(field, got, expected string) *Error {
	return &Error{Path: field, Got: got, Expected: expected, relative: true}
}

// Error formats the problem as "config: PATH: expected EXPECTED, got GOT",
// or "config: PATH: " followed by Err when nothing is expected.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	switch {
	case e.Expected != "":
		b.WriteString("expected ")
		b.WriteString(e.Expected)
		if e.Got != "" {
			b.WriteString(", got ")
			b.WriteString(e.Got)
		}
		if e.Err != nil {
			b.WriteString(": ")
			b.WriteString(e.Err.Error())
		}
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("invalid value")
		if e.Got != "" {
			b.WriteString(" ")
			b.WriteString(e.Got)
		}
	}
	return b.String()
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

var errRequired = errors.New("required")

// joinPath appends key (a field name, map key or "[i]" index) to path.
func joinPath(path, key string) string {
	switch {
	case path == "":
		return key
	case key == "":
		return path
	case key[0] == '[':
		return path + key
	}
	return path + "." + key
}
