package kernel

import (
	"context"
	"io"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/axonrpc/axon/kernel/metadata"
	"github.com/axonrpc/axon/kernel/status"
)

// maxRefusedRetries bounds how often one call is sent again after servers
// refused it without running it.
const maxRefusedRetries = 4

// send is the innermost invoker: pick an endpoint and a connection, send,
// and resend a call that a server refused before running it.
func (c *Client) send(ctx context.Context, p *policy, spec *Spec, req, resp any) error {
	call := c.pool.Get().(*ClientCall)
	dones := call.dones[:0]
	*call = ClientCall{Method: spec.FullMethod, Codec: c.o.Codec, Metadata: metadata.FromOutgoingContext(ctx), Idempotent: spec.Idempotent, spec: spec, dones: dones}
	if opts, ok := ctx.Value(optsKey{}).([]CallOption); ok {
		for _, o := range opts {
			o(call)
		}
	}
	call.pick = PickInfo{Ctx: ctx, Spec: spec, Method: spec.FullMethod, Metadata: call.Metadata}
	defer func() {
		dones := call.dones[:0]
		clear(call.dones[:cap(call.dones)])
		*call = ClientCall{dones: dones}
		c.pool.Put(call)
	}()
	if sc, ok := call.Codec.(SchemaCodec); ok {
		call.Schema = sc.Schema(req, resp)
	}

	return c.untilAccepted(ctx, p, call, p.latency, func(sb *sessionBox) error {
		err := sb.s.Invoke(ctx, call, req, resp)
		sb.stats.Finish(status.CodeOf(err))
		return err
	})
}

// untilAccepted picks a session for call and runs attempt on it, again on
// another pick (at most maxRefusedRetries times) while servers refuse the
// call without running it. Guards admit and observe every attempt; timed
// says whether the attempt's latency is observed too.
func (c *Client) untilAccepted(ctx context.Context, p *policy, call *ClientCall, timed bool, attempt func(*sessionBox) error) error {
	var err error
	var refusedBy Session
	for n := 0; n <= maxRefusedRetries; n++ {
		// A refusal often means the server is moving: look again first.
		sb, b, serr := c.retrySession(ctx, p, &call.pick, n, refusedBy)
		if serr != nil {
			return serr
		}
		if err = c.admit(ctx, p, b, call); err != nil {
			return err
		}
		var start time.Time
		if timed {
			start = time.Now()
		}
		err = attempt(sb)
		c.finish(p, b, call, start, err)
		if err == nil || !status.IsRefused(err) {
			return err
		}
		s := sb.s
		if ctx.Err() != nil {
			// Not run, and no time left to run it elsewhere.
			return status.FromError(ctx.Err())
		}
		refusedBy = s
	}
	return err
}

// retrySession is session for attempt number attempt of a call. When the
// session that refused the previous attempt comes back (it still says it
// accepts calls: its connection broke and its reader has not noticed yet,
// or the server's stream limit is reached), it waits a little, growing with
// the attempt, and looks again, rather than be refused again at once.
func (c *Client) retrySession(ctx context.Context, p *policy, pi *PickInfo, attempt int, refusedBy Session) (*sessionBox, *Backend, error) {
	sb, b, err := c.session(ctx, p, pi, attempt > 0)
	if err != nil || refusedBy == nil || !reflect.TypeOf(sb.s).Comparable() || sb.s != refusedBy {
		return sb, b, err
	}
	t := time.NewTimer(time.Millisecond << attempt)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil, nil, status.FromError(ctx.Err())
	case <-t.C:
	}
	return c.session(ctx, p, pi, true)
}

// admit asks the policy's guards to admit an attempt on b; a guard that
// refuses fails it, and the guards that admitted it learn that.
func (c *Client) admit(ctx context.Context, p *policy, b *Backend, call *ClientCall) error {
	call.dones = call.dones[:0]
	for _, g := range p.guards {
		done, err := g.Admit(ctx, b, call.spec)
		if err != nil {
			for _, d := range call.dones {
				d(nil) // not sent: neither success nor failure of b
			}
			call.dones = call.dones[:0]
			return err
		}
		if done != nil {
			call.dones = append(call.dones, done)
		}
	}
	return nil
}

// finish records an attempt's outcome on b: the guards' done functions,
// outlier ejection and latency.
func (c *Client) finish(p *policy, b *Backend, call *ClientCall, start time.Time, err error) {
	for _, d := range call.dones {
		if status.IsRefused(err) {
			d(nil) // never run: says nothing about b's health
		} else {
			d(err)
		}
	}
	call.dones = call.dones[:0]
	if p.latency && !start.IsZero() && !status.IsRefused(err) {
		d := int64(time.Since(start))
		if old := b.ewma.Load(); old != 0 {
			d = old + (d-old)/8
		}
		b.ewma.Store(max(d, 1))
	}
	if p.outlier.ConsecutiveFailures > 0 {
		c.observe(p, b, err)
	}
}

// open is the innermost Streamer: pick an endpoint and a connection and open
// the stream, again elsewhere when a server refused it. Guards see the
// opening of the stream, not its end.
func (c *Client) open(ctx context.Context, p *policy, spec *Spec) (ClientStream, error) {
	call := &ClientCall{Method: spec.FullMethod, Codec: c.o.Codec, Metadata: metadata.FromOutgoingContext(ctx), Idempotent: spec.Idempotent, spec: spec}
	if opts, ok := ctx.Value(optsKey{}).([]CallOption); ok {
		for _, o := range opts {
			o(call)
		}
	}
	call.pick = PickInfo{Ctx: ctx, Spec: spec, Method: spec.FullMethod, Metadata: call.Metadata}
	if sc, ok := call.Codec.(SchemaCodec); ok && call.req != nil {
		call.Schema = sc.Schema(call.req, call.resp)
	}
	var cs ClientStream
	err := c.untilAccepted(ctx, p, call, false, func(sb *sessionBox) (err error) {
		cs, err = sb.s.NewStream(ctx, call)
		if err != nil {
			sb.stats.Finish(status.CodeOf(err))
		} else {
			cs = &countedStream{ClientStream: cs, stats: &sb.stats}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return cs, nil
}

// countedStream counts a stream's status in its session's view when the
// stream ends (RecvMsg returns an error, io.EOF being OK).
type countedStream struct {
	ClientStream
	stats *ConnStats
	ended atomic.Bool
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && s.ended.CompareAndSwap(false, true) {
		if err == io.EOF {
			s.stats.Finish(status.OK)
		} else {
			s.stats.Finish(status.CodeOf(err))
		}
	}
	return err
}
