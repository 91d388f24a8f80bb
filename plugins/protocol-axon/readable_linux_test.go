package native_test

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// control runs f on c's socket.
func control(t *testing.T, c *net.TCPConn, f func(fd int)) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { f(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

// readable returns the bytes waiting in c's receive queue (FIONREAD),
// without reading them.
func readable(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	n, err := 0, error(nil)
	control(t, c, func(fd int) { n, err = unix.IoctlGetInt(fd, unix.TIOCINQ) })
	if err != nil {
		t.Fatalf("FIONREAD: %v", err)
	}
	return n
}

// tcpState returns the kernel's TCP state of c (unix.BPF_TCP_*), or -1.
func tcpState(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	state := -1
	control(t, c, func(fd int) {
		if info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			state = int(info.State)
		}
	})
	return state
}
