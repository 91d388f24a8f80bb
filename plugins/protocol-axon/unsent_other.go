//go:build !linux

package native

import "net"

// unsent cannot tell the kernel's send queue on this system.
func unsent(net.Conn) (int, bool) { return 0, false }
