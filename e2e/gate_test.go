package e2e_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/axonrpc/axon/kernel/axonwire"
	"github.com/axonrpc/axon/kernel/transporttest"
)

// dialFrom opens a raw TCP connection to addr from the loopback address
// local (such as 127.0.0.2), so that a test can be several peers.
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: testTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c (reading gives EOF or
// a reset) rather than leaving it open (reading times out: the server
// waits for the preface).
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestConnectionCaps: server.limits.max_connections and
// max_connections_per_ip close a connection beyond them at once, before
// the server reads anything from it, count it in the live view, and admit
// again once a connection has gone.
func TestConnectionCaps(t *testing.T) {
	addr := freePort(t)
	srv := startServer(t, srvConf{Addr: addr, Limits: "{max_connections: 3, max_connections_per_ip: 2}"})
	steps := []struct {
		from   string
		closed bool
	}{
		{"127.0.0.1", false},
		{"127.0.0.1", false},
		{"127.0.0.1", true}, // a third from one address
		{"127.0.0.2", false},
		{"127.0.0.3", true}, // a fourth in all
	}
	var kept []net.Conn
	for i, s := range steps {
		c := dialFrom(t, s.from, addr)
		if got := closedByServer(t, c); got != s.closed {
			t.Fatalf("connection %d from %s: closed by the server %v, want %v", i, s.from, got, s.closed)
		}
		if !s.closed {
			kept = append(kept, c)
		}
	}
	v := srv.rt.Snapshot().Connections
	if v.Open != 3 || v.Max != 3 || v.Rejected["max_connections_per_ip"] != 1 || v.Rejected["max_connections"] != 1 {
		t.Fatalf("connections view %+v, want 3 open of 3, one refusal per cap", v)
	}
	kept[0].Close()
	waitFor(t, "the closed connection to leave the count", func() bool { return srv.rt.Snapshot().Connections.Open == 2 })
	if closedByServer(t, dialFrom(t, "127.0.0.1", addr)) {
		t.Fatal("a connection was refused after one had closed")
	}
}

// TestAbusePenalty: a peer whose connection is closed for flooding frames
// that do no work (native frames of an unknown type, HTTP/2 SETTINGS)
// cannot come straight back: connections from its address are refused at
// accept for a while (counted as "abuse"), while other addresses are
// served.
func TestAbusePenalty(t *testing.T) {
	native := transporttest.AppendFrame([]byte(axonwire.Preface), axonwire.FrameSettings, 0, 0, nil)
	for range 200 {
		native = transporttest.AppendFrame(native, 0x7f, 0, 0, nil) // an unknown frame type
	}
	var h2 bytes.Buffer
	h2.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&h2, nil)
	for range 200 {
		fr.WriteSettings()
	}
	for i, tc := range []struct {
		name  string
		flood []byte
	}{
		{"native", native},
		{"HTTP/2 SETTINGS", h2.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freePort(t)
			srv := startServer(t, srvConf{Addr: addr, Protocols: "[axon, grpc]", Limits: "{control_frame_rate: 20}"})
			flooder, other := fmt.Sprintf("127.0.0.%d", 4+2*i), fmt.Sprintf("127.0.0.%d", 5+2*i)
			c := dialFrom(t, flooder, addr)
			if _, err := c.Write(tc.flood); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(testTimeout))
			if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("the flooding connection was not closed: %v", err)
			}
			if !closedByServer(t, dialFrom(t, flooder, addr)) {
				t.Fatal("the flooder's address was admitted again at once")
			}
			if closedByServer(t, dialFrom(t, other, addr)) {
				t.Fatal("another address was refused")
			}
			if n := srv.rt.Snapshot().Connections.Rejected["abuse"]; n != 1 {
				t.Fatalf("rejected for abuse: %d, want 1", n)
			}
		})
	}
}
