package kernel

import "time"

// observe counts b's consecutive failures and ejects b when they reach the
// configured number, unless the share of ejected endpoints is used up.
func (c *Client) observe(p *policy, b *Backend, err error) {
	if !serverFailure(err) {
		if err == nil && b.fails.Load() != 0 {
			b.fails.Store(0)
		}
		return
	}
	if int(b.fails.Add(1)) < p.outlier.ConsecutiveFailures {
		return
	}
	now := time.Now().UnixNano()
	if b.ejectedAt(now) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.ejectedAt(now) {
		return
	}
	ejected := 0
	for _, e := range c.eps {
		if e.ejectedAt(now) {
			ejected++
		}
	}
	limit := min(int(p.outlier.MaxEjectedShare*float64(len(c.eps))), len(c.eps)-1)
	if ejected >= limit {
		return // keep counting: the next failure tries again
	}
	k := b.ejections.Load()
	if prev := b.ejectedUntil.Load(); prev != 0 && now-prev > int64(p.outlier.MaxEjection) {
		k = 0 // healthy for long enough: start again from the base period
	}
	d := min(p.outlier.BaseEjection<<min(k, 30), p.outlier.MaxEjection)
	b.ejections.Store(k + 1)
	b.ejectedUntil.Store(now + int64(d))
	b.fails.Store(0)
	c.o.Logger.Warn("endpoint ejected", "target", c.o.Target, "endpoint", b.addr, "for", d, "ejections", k+1)
}

// usable reports whether b may take a call to method now: it is not ejected
// and every guard would admit the call.
func (p *policy) usable(b *Backend, method string) bool {
	if u := b.ejectedUntil.Load(); u != 0 && time.Now().UnixNano() < u {
		return false
	}
	for _, g := range p.guards {
		if !g.Available(b, method) {
			return false
		}
	}
	return true
}
