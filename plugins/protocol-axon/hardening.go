package native

import (
	"bufio"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/axonrpc/axon/kernel/status"
)

// Defences of a server connection against peers that would pin its memory
// or CPU (the limits are kernel.Limits; see the README's Limits):
//
//   - the writer fails a write that makes no progress for write_timeout and
//     closes the connection (writer.timeout, closeOnErr), and drops its
//     buffers once failed;
//   - past max_conn_buffered of unsent output, new calls are refused
//     (onHeaders) and the reader stops reading until the output drains, for
//     at most write_timeout (serverConn.waitDrain); running unary calls count
//     their messages against it until answered (serverConn.promised,
//     onData); the reader's own answers (refusals, PING answers) drop the
//     connection past max_conn_buffered (writer.tryWrite);
//   - a connection given up on is reset (abort), not closed behind output
//     its peer will never read;
//   - request messages are charged to the process-wide budget
//     (kernel.Budget) before they are read;
//   - housekeep resets calls whose request is late (request_timeout) and
//     sends an idle connection away (idle_timeout); a timer sends an old one
//     away (max_connection_age);
//   - frames that do no work are charged to a token bucket
//     (control_frame_rate); a peer over it gets GOAWAY and is closed.

// abort closes conn at once with a reset (SO_LINGER 0) where it can: the
// close of a connection whose peer the server gives up on (a write
// timeout, output over its limit, a request stuck halfway). An orderly
// close would queue the FIN behind the output still in the kernel's send
// buffer, which a peer that does not read never lets through: the peer
// would not learn of the close, and the kernel would keep that buffer
// (megabytes) until TCP gives up.
func abort(conn net.Conn) {
	if l, ok := rawConn(conn).(interface{ SetLinger(int) error }); ok {
		l.SetLinger(0)
	}
	conn.Close()
}

// rawConn returns the connection under conn's wrappers (the sniffer's,
// TLS), as far as they expose it with NetConn.
func rawConn(conn net.Conn) net.Conn {
	for {
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			return conn
		}
		conn = u.NetConn()
	}
}

// closeSoon closes conn, which the server is done with, in order once the
// peer has taken what is left in the kernel's send queue; if the queue
// makes no progress for wait, the peer is not reading and conn is reset
// (abort). So a server-side close, whatever its cause (an idle or old
// connection sent away, a drain, a protocol error), never leaves the
// kernel holding a connection and its unsent output for a peer that
// ignores both. Where the send queue cannot be read, conn is closed in
// order at once. It blocks for at most about wait.
func closeSoon(conn net.Conn, wait time.Duration) {
	n, ok := unsent(conn)
	if !ok || n == 0 {
		conn.Close()
		return
	}
	last, step := time.Now(), time.Millisecond
	for {
		time.Sleep(step)
		step = min(2*step, 50*time.Millisecond)
		m, ok := unsent(conn)
		switch {
		case !ok || m == 0:
			conn.Close()
			return
		case m < n:
			n, last = m, time.Now()
		case time.Since(last) >= wait:
			abort(conn)
			return
		}
	}
}

// errCalm ends the read loop of a peer over its control-frame budget.
var errCalm = errors.New("protocol.axon: too many control frames")

// calmLinger bounds how long a connection closed for errCalm goes on
// reading (and discarding) after its GOAWAY, so that the peer can read the
// GOAWAY before the close resets the connection.
const calmLinger = 500 * time.Millisecond

// ctlBucket is a token bucket of control frames: rate a second, with a
// burst of as many. The reader goroutine owns it.
type ctlBucket struct {
	tokens, rate float64
	last         time.Time
}

func (b *ctlBucket) init(rate int) {
	b.rate = float64(max(rate, 1))
	b.tokens = b.rate
	b.last = time.Now()
}

// take takes cost tokens and reports whether there were enough.
func (b *ctlBucket) take(cost float64) bool {
	now := time.Now()
	b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < cost {
		return false
	}
	b.tokens -= cost
	return true
}

// earnResetCredit records a call handed to a worker (see resetCredit); the
// reader goroutine calls it.
func (c *serverConn) earnResetCredit() {
	c.resetCredit = min(c.resetCredit+1, float64(c.srv.limits.ControlFrameRate))
}

// charge charges a frame that did no work; over budget it returns errCalm.
func (c *serverConn) charge(cost float64) error {
	if c.ctl.take(cost) {
		return nil
	}
	return errCalm
}

// calm answers a peer over its control-frame budget: a final GOAWAY with
// RESOURCE_EXHAUSTED, "too many control frames", then the end of its
// output; the caller closes the connection.
func (c *serverConn) calm(br *bufio.Reader) {
	c.mu.Lock()
	if !c.draining {
		c.draining = true
		c.idle, c.drainAck = newIdle(c.ended), make(chan struct{})
	}
	c.goingAway = true
	last := c.lastID
	c.mu.Unlock()
	c.srv.d.Logger().Debug("closing a connection over control_frame_rate", "peer", c.conn.RemoteAddr().String())
	c.w.tryWrite(func(b []byte) []byte {
		return appendGoAway(b, last, status.ResourceExhausted, "too many control frames (control_frame_rate)")
	}, c.hardBacklog)
	c.w.waitIdle() // bounded by write_timeout
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.conn.SetReadDeadline(time.Now().Add(calmLinger))
	io.Copy(io.Discard, br)
}

// startTimers starts housekeeping and, with max_connection_age, the
// connection's age timer.
func (c *serverConn) startTimers() {
	lim := c.srv.limits
	p := lim.RequestTimeout
	if lim.IdleTimeout > 0 {
		p = min(p, lim.IdleTimeout)
	}
	c.period = max(p/2, time.Millisecond)
	// A call registered in round e is late from round e+reqTicks on: it
	// has then waited more than (reqTicks-1) periods, at least
	// request_timeout. Likewise idleTicks quiet rounds span idle_timeout.
	c.reqTicks = uint32((lim.RequestTimeout+c.period-1)/c.period) + 1
	if lim.IdleTimeout > 0 {
		c.idleTicks = int((lim.IdleTimeout+c.period-1)/c.period) + 1
	}
	c.hk = time.AfterFunc(time.Hour, c.housekeep) // armed once c.hk is set
	c.hk.Reset(c.period)
	if age := lim.MaxConnectionAge; age > 0 {
		// Give or take 10%, so that connections opened together do not all
		// go away at once.
		j := age / 10
		d := age - j + rand.N(2*j+1)
		c.age = time.AfterFunc(d, func() {
			c.goAway(true, status.Unavailable, "max_connection_age reached")
			c.closeWhenDrained()
		})
	}
}

func (c *serverConn) stopTimers() {
	c.hk.Stop()
	if c.age != nil {
		c.age.Stop()
	}
}

// housekeep runs every period on its own: it resets unary calls whose
// message has not arrived within request_timeout (TRAILERS with
// DEADLINE_EXCEEDED; their state is freed), closes the connection when the
// reader has been stuck in one call's request payload (HEADERS or message)
// that long, and sends the connection away once it has had no call for
// idle_timeout.
func (c *serverConn) housekeep() {
	if c.ctx.Err() != nil {
		return
	}
	now := c.tick.Add(1)
	lim := c.srv.limits
	var late []*sstream
	c.mu.Lock()
	for id, st := range c.streams {
		if !st.started && now-st.epoch >= c.reqTicks {
			// Claimed as the reader claims a call: its DATA is now skipped.
			delete(c.streams, id)
			st.started = true
			late = append(late, st)
		}
	}
	idle := false
	if c.idleTicks > 0 && !c.draining {
		if len(c.streams) == 0 && c.answering == 0 && c.opened == c.hkOpened {
			c.quiet++
		} else {
			c.quiet = 0
		}
		c.hkOpened = c.opened
		idle = c.quiet >= c.idleTicks
	}
	c.mu.Unlock()
	if r := c.reading.Load(); r != 0 && now-(r-1) >= c.reqTicks {
		// The frame cannot be skipped before its bytes arrive: drop the
		// connection (the reader ends, and everything with it).
		c.srv.d.Logger().Debug("request not received within request_timeout: closing the connection",
			"peer", c.conn.RemoteAddr().String(), "request_timeout", lim.RequestTimeout)
		abort(c.conn)
		return
	}
	for _, st := range late {
		c.finish(st, status.Errorf(status.DeadlineExceeded, "protocol.axon: the request did not arrive within request_timeout (%v)", lim.RequestTimeout))
	}
	if idle {
		c.goAway(false, status.Unavailable, "idle connection (idle_timeout)")
		go c.closeWhenDrained()
	}
	c.hk.Reset(c.period)
}

// closeWhenDrained closes the connection once it went away and its last
// call ended (or it ended anyway), after its last frames are written.
func (c *serverConn) closeWhenDrained() {
	c.mu.Lock()
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
	case <-c.ctx.Done():
	}
	c.w.waitIdle() // bounded by write_timeout
	closeSoon(c.conn, c.srv.limits.WriteTimeout)
}
