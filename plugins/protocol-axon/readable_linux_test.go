package native_test

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// readable returns the bytes waiting in c's receive queue (FIONREAD),
// without reading them.
func readable(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n, ierr := 0, error(nil)
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil || ierr != nil {
		t.Fatalf("FIONREAD: %v %v", err, ierr)
	}
	return n
}
