package status_test

import (
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/axonrpc/axon/kernel/status"
)

// TestCause: a status error keeps the error it was made from, so that
// errors.Is and errors.As work through it, and its text stays gRPC's.
func TestCause(t *testing.T) {
	cases := []struct {
		name string
		err  *status.Error
		is   error
		code status.Code
	}{
		{"NewError", status.NewError(status.Internal, fs.ErrNotExist), fs.ErrNotExist, status.Internal},
		{"Errorf with %w", status.Errorf(status.Unavailable, "dial x: %w", fs.ErrPermission), fs.ErrPermission, status.Unavailable},
		{"FromError of a deadline", status.FromError(context.DeadlineExceeded), context.DeadlineExceeded, status.DeadlineExceeded},
		{"FromError of a wrapped cancel", status.FromError(errors.Join(errors.New("x"), context.Canceled)), context.Canceled, status.Canceled},
		{"FromError of anything", status.FromError(fs.ErrClosed), fs.ErrClosed, status.Unknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !errors.Is(c.err, c.is) {
				t.Errorf("errors.Is(%v, %v) = false", c.err, c.is)
			}
			if c.err.Code() != c.code {
				t.Errorf("code %v, want %v", c.err.Code(), c.code)
			}
			var se *status.Error
			if !errors.As(error(c.err), &se) || se != c.err {
				t.Errorf("errors.As does not find the status error itself")
			}
		})
	}
	if err := status.Errorf(status.Internal, "plain %d", 1); err.Unwrap() != nil {
		t.Errorf("Errorf without %%w has cause %v", err.Unwrap())
	}
	if got := status.Errorf(status.Internal, "dial: %w", fs.ErrNotExist).Error(); got != "rpc error: code = INTERNAL desc = dial: file does not exist" {
		t.Errorf("Error() = %q", got)
	}
}
