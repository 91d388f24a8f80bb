package kernel

import (
	"context"
	"time"

	"github.com/axonrpc/axon/kernel/status"
)

// resolveEvery is how long resolved endpoints are reused before resolving
// the target again.
const resolveEvery = 5 * time.Second

// endpoints returns the target's endpoints, resolving them when they are
// unknown, older than resolveEvery (unless a watch keeps them fresh), or
// refresh is set.
func (c *Client) endpoints(ctx context.Context, refresh bool) ([]*Backend, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, status.New(status.Unavailable, "client is closed")
	}
	if c.eps != nil && !refresh && (c.watched || time.Since(c.resolved) < resolveEvery) {
		return c.eps, nil
	}
	if c.o.Resolver == nil {
		return c.setLocked([]Endpoint{{Address: c.o.Target}})
	}
	found, err := c.o.Resolver.Resolve(ctx, c.o.Target)
	if err != nil {
		if c.eps != nil {
			return c.eps, nil // keep serving from the last known set
		}
		return nil, status.Errorf(status.Unavailable, "resolve %s: %w", c.o.Target, err)
	}
	return c.setLocked(found)
}

// setLocked makes found the endpoint set, keeping the connections and
// counters of endpoints that stay (their labels and weight are updated);
// c.mu is held. Connections to endpoints that left finish their calls in
// flight before they close.
func (c *Client) setLocked(found []Endpoint) ([]*Backend, error) {
	old := make(map[string]*Backend, len(c.eps))
	for _, e := range c.eps {
		old[e.addr] = e
	}
	eps := make([]*Backend, 0, len(found))
	var skipped []string
	for _, f := range found {
		info := f
		if e, ok := old[f.Address]; ok {
			e.info.Store(&info)
			eps = append(eps, e)
			delete(old, f.Address)
			continue
		}
		scheme, addr := SplitAddress(f.Address)
		tr := c.o.Transports[scheme]
		if tr == nil {
			skipped = append(skipped, f.Address)
			continue
		}
		slots := make([]connSlot, c.o.ConnsPerEndpoint)
		for i := range slots {
			slots[i].dialing = make(chan struct{}, 1)
		}
		gone, cancel := context.WithCancel(context.Background())
		b := &Backend{addr: f.Address, transport: tr, address: addr, slots: slots, gone: gone, cancel: cancel}
		b.info.Store(&info)
		eps = append(eps, b)
	}
	if len(eps) == 0 {
		if len(skipped) > 0 {
			return nil, status.Errorf(status.Unavailable, "resolve %s: no transport for endpoints %v", c.o.Target, skipped)
		}
		return nil, status.Errorf(status.Unavailable, "resolve %s: no endpoints", c.o.Target)
	}
	for _, e := range old {
		go e.retire()
	}
	if c.eps != nil {
		// Endpoints that join a set already in use (a server moving to a
		// new listener, a new replica) are connected now, in the
		// background, so that no call waits for their dial.
		known := make(map[*Backend]bool, len(c.eps))
		for _, e := range c.eps {
			known[e] = true
		}
		for _, e := range eps {
			if !known[e] {
				go c.warm(e)
			}
		}
	}
	c.eps, c.resolved = eps, time.Now()
	if r := c.pol.Load().router; r != nil {
		r.Update(eps)
	}
	return eps, nil
}

// watch follows a Watcher's updates until ctx is done.
func (c *Client) watch(ctx context.Context, w Watcher) {
	err := w.Watch(ctx, c.o.Target, func(found []Endpoint) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed {
			return
		}
		if _, err := c.setLocked(found); err != nil {
			c.o.Logger.Debug("endpoint update ignored", "target", c.o.Target, "err", err)
			return
		}
		c.watched = true
	})
	if err != nil && ctx.Err() == nil {
		c.o.Logger.Warn("watch failed; resolving periodically instead", "target", c.o.Target, "err", err)
	}
	c.mu.Lock()
	c.watched = false
	c.mu.Unlock()
}

// retireGrace bounds how long connections to a removed endpoint wait for
// their calls before they close.
const retireGrace = time.Minute

// retire drains the endpoint's connections: calls in flight finish, new
// ones go elsewhere, and a connection still busy after retireGrace closes.
func (e *Backend) retire() {
	e.cancel()
	for i := range e.slots {
		if b := e.slots[i].sess.Load(); b != nil {
			b.s.Drain()
			go func() {
				select {
				case <-b.s.Done():
				case <-time.After(retireGrace):
					b.s.Close()
				}
			}()
		}
	}
}

func (e *Backend) closeIdle() {
	e.cancel()
	for i := range e.slots {
		if b := e.slots[i].sess.Load(); b != nil {
			b.s.Close()
		}
	}
}
