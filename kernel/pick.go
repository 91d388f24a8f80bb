package kernel

import (
	"context"
	"time"

	"github.com/axonrpc/axon/kernel/status"
)

// candidates returns the endpoints the call may use and the index of the
// one the balancer picked, moved to a usable endpoint when the picked one
// is not usable and another is.
func (p *policy) candidates(eps []*Backend, pi *PickInfo) ([]*Backend, int, error) {
	cand := eps
	if p.router != nil {
		sub, err := p.router.Route(pi)
		if err != nil {
			return nil, 0, err
		}
		if sub != nil {
			cand = sub
		}
		if len(cand) == 0 {
			return nil, 0, status.Errorf(status.Unavailable, "no endpoint matches the route of %s", pi.Method)
		}
	}
	if len(cand) == 1 {
		return cand, 0, nil
	}
	i := p.balancer.Pick(pi, cand)
	if i < 0 || i >= len(cand) {
		i = 0
	}
	if !p.usable(cand[i], pi.Method) {
		for j := 1; j < len(cand); j++ {
			if k := (i + j) % len(cand); p.usable(cand[k], pi.Method) {
				return cand, k, nil
			}
		}
	}
	return cand, i, nil
}

// session returns an accepting session to the endpoint the policy picks for
// the call, dialing one if needed. When the picked endpoint cannot be
// reached the others are tried in order; when none can, the endpoints are
// resolved again and tried again a few times within ctx: a server may have
// moved, and a call that was never sent is safe to send elsewhere.
func (c *Client) session(ctx context.Context, p *policy, pi *PickInfo, refresh bool) (*sessionBox, *Backend, error) {
	var lastErr error
	for attempt := range connectAttempts {
		eps, err := c.endpoints(ctx, refresh || attempt > 0)
		if err != nil {
			return nil, nil, err
		}
		cand, first, err := p.candidates(eps, pi)
		if err != nil {
			return nil, nil, err
		}
		var n uint64
		if c.o.ConnsPerEndpoint > 1 {
			n = c.next.Add(1)
		}
		// Try each endpoint once, starting at the picked one; wait behind
		// another caller's dial only when nothing else works.
		var busy *Backend
		var busySlot *connSlot
		for i := range cand {
			ep := cand[(first+i)%len(cand)]
			if i > 0 && !p.usable(ep, pi.Method) {
				continue
			}
			slot := &ep.slots[int(n%uint64(len(ep.slots)))]
			if b := slot.sess.Load(); b != nil && b.s.Accepting() {
				return b, ep, nil
			}
			s, err := c.dial(ctx, ep, slot, false)
			if err == nil {
				return s, ep, nil
			}
			if err == errDialBusy {
				if busy == nil {
					busy, busySlot = ep, slot
				}
				continue
			}
			lastErr = err
			if ctx.Err() != nil {
				return nil, nil, status.FromError(ctx.Err())
			}
			if p.outlier.ConsecutiveFailures > 0 {
				c.observe(p, ep, err)
			}
		}
		if busy != nil {
			s, err := c.dial(ctx, busy, busySlot, true)
			if err == nil {
				return s, busy, nil
			}
			lastErr = err
			if ctx.Err() != nil {
				return nil, nil, status.FromError(ctx.Err())
			}
		}
		t := time.NewTimer(time.Duration(10<<attempt) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, status.FromError(ctx.Err())
		case <-t.C:
		}
	}
	if lastErr == nil {
		lastErr = status.Errorf(status.Unavailable, "no usable endpoint of %s", c.o.Target)
	}
	return nil, nil, lastErr
}

// connectAttempts bounds how often session resolves and dials again.
const connectAttempts = 4
