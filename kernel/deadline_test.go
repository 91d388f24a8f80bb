package kernel

import (
	"context"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel/status"
)

// TestExpiredCallsDoNotRun: a call whose context is done when the
// dispatcher gets it (its deadline passed while it arrived or queued) is
// answered DEADLINE_EXCEEDED (or CANCELLED) without running the chain.
func TestExpiredCallsDoNotRun(t *testing.T) {
	ran := 0
	svc := NewService("t.S", Unary("M", func(context.Context, *struct{}) (*struct{}, error) { ran++; return &struct{}{}, nil }))
	table, err := NewServiceTable([]*ServiceDesc{svc})
	if err != nil {
		t.Fatal(err)
	}
	ic := Interceptor{Server: func(ctx context.Context, req any, next UnaryHandler) (any, error) { ran++; return next(ctx, req) }}
	d := NewDispatcher(table, []Interceptor{ic}, nil, Limits{}, nil)
	r := d.Route("/t.S/M")

	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel()
	if _, err := d.HandleUnary(expired, r, &struct{}{}); status.CodeOf(err) != status.DeadlineExceeded {
		t.Errorf("expired deadline: %v", err)
	}
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := d.HandleUnary(cancelled, r, &struct{}{}); status.CodeOf(err) != status.Canceled {
		t.Errorf("cancelled: %v", err)
	}
	if ran != 0 {
		t.Fatalf("the chain ran %d times for calls that had expired", ran)
	}
	if _, err := d.HandleUnary(context.Background(), r, &struct{}{}); err != nil || ran != 2 {
		t.Fatalf("live call: err %v, ran %d", err, ran)
	}
}
