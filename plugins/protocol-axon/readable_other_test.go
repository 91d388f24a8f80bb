//go:build !linux

package native_test

import (
	"net"
	"testing"
	"time"
)

// readable cannot look into c's receive queue here: it waits a moment and
// says something arrived.
func readable(t *testing.T, c *net.TCPConn) int {
	time.Sleep(300 * time.Millisecond)
	return 1
}
