package native

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// unsent returns the bytes in conn's kernel send queue that the peer has
// not acknowledged (SIOCOUTQ), and whether it could tell. A TCP connection
// the peer has reset has nothing more to send, whatever it had queued.
func unsent(conn net.Conn) (int, bool) {
	sc, ok := rawConn(conn).(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	n, ierr := 0, error(nil)
	reset := false
	if err := rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil && info.State == unix.BPF_TCP_CLOSE {
			reset = true
			return
		}
		n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	}); err != nil || ierr != nil {
		return 0, false
	}
	if reset {
		return 0, true
	}
	return n, true
}
