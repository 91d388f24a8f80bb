// Package status carries the result of an Axon call: a gRPC status code and a
// message. Every protocol Axon speaks maps its results to these codes, so a
// client sees the same status whichever wire carried the call.
package status

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Code is a gRPC status code. The numeric values are gRPC's, so they can be
// sent on any wire unchanged.
type Code uint32

// The gRPC status codes.
const (
	OK                 Code = 0
	Canceled           Code = 1
	Unknown            Code = 2
	InvalidArgument    Code = 3
	DeadlineExceeded   Code = 4
	NotFound           Code = 5
	AlreadyExists      Code = 6
	PermissionDenied   Code = 7
	ResourceExhausted  Code = 8
	FailedPrecondition Code = 9
	Aborted            Code = 10
	OutOfRange         Code = 11
	Unimplemented      Code = 12
	Internal           Code = 13
	Unavailable        Code = 14
	DataLoss           Code = 15
	Unauthenticated    Code = 16
)

var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// String returns the code's canonical upper-case name, as gRPC spells it.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// Error is an error carrying a status code. A nil *Error is not a valid error;
// use a nil error for OK.
type Error struct {
	code Code
	msg  string
	// refused marks a call that the server rejected before running any of
	// its handler, so that a client may safely retry it elsewhere.
	refused bool
	// cause is the error the status was made from, for errors.Is and
	// errors.As; it is never sent to the peer.
	cause error
}

// New returns an error with code c and message msg. New(OK, ...) is allowed
// but is not useful as an error.
func New(c Code, msg string) *Error { return &Error{code: c, msg: msg} }

// Errorf is New with a formatted message. An error wrapped with %w is the
// status error's cause (see Unwrap).
func Errorf(c Code, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{code: c, msg: err.Error(), cause: errors.Unwrap(err)}
}

// NewError returns an error with code c whose message is err's text and
// whose cause is err, so that errors.Is and errors.As see through it.
func NewError(c Code, err error) *Error {
	return &Error{code: c, msg: err.Error(), cause: err}
}

// Unwrap returns the error the status was made from, or nil.
func (e *Error) Unwrap() error { return e.cause }

// Refused returns an UNAVAILABLE error that marks the call as not processed by
// the server: no handler ran, so retrying it cannot duplicate a side effect.
func Refused(msg string) *Error { return &Error{code: Unavailable, msg: msg, refused: true} }

// Code returns the status code.
func (e *Error) Code() Code { return e.code }

// Message returns the status message.
func (e *Error) Message() string { return e.msg }

// IsRefused reports whether the server refused the call before running it.
func (e *Error) IsRefused() bool { return e.refused }

// Error formats the error as gRPC's tools do: "rpc error: code = X desc = msg".
func (e *Error) Error() string {
	return "rpc error: code = " + e.code.String() + " desc = " + e.msg
}

// Is lets errors.Is match two status errors with the same code and message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.code == e.code && t.msg == e.msg
}

// FromError returns the status error in err's chain. Context errors map to
// CANCELLED and DEADLINE_EXCEEDED; any other error maps to UNKNOWN with the
// error's text. FromError(nil) is nil.
func FromError(err error) *Error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return NewError(DeadlineExceeded, err)
	case errors.Is(err, context.Canceled):
		return NewError(Canceled, err)
	}
	return NewError(Unknown, err)
}

// CodeOf returns the status code of err: OK for nil, see FromError otherwise.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	return FromError(err).code
}

// IsRefused reports whether err says the server refused the call before
// running it (see Refused).
func IsRefused(err error) bool {
	var se *Error
	return errors.As(err, &se) && se.refused
}

// ParseCode returns the code whose name (as Code.String gives it, such as
// "UNAVAILABLE") is name.
func ParseCode(name string) (Code, bool) {
	for c := OK; c <= Unauthenticated; c++ {
		if c.String() == name {
			return c, true
		}
	}
	return 0, false
}
