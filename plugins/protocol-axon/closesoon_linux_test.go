package native_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/axonrpc/axon/kernel"
)

// TestServerCloseResetsNonReader: when the server is done with a
// connection (here: idle_timeout) while output its peer never read is still
// in the kernel's send queue, an orderly close would queue the FIN behind
// that output, so the peer would never learn of the close and the kernel
// would keep the connection and its buffer for minutes. The server resets
// it instead once the queue made no progress for write_timeout: the peer,
// which still has not read a byte, sees its connection leave ESTABLISHED.
func TestServerCloseResetsNonReader(t *testing.T) {
	h := startHardened(t, kernel.Limits{IdleTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond}, 0)
	p, c := h.dial(t, 4<<10)
	p.Handshake()
	// One call whose 256 KiB response the server's send buffer takes
	// whole, while the peer's 4 KiB receive buffer takes almost none.
	p.Send(unaryCall(1, "/h.S/Big", "x"))
	deadline := time.Now().Add(10 * time.Second)
	for tcpState(t, c) == unix.BPF_TCP_ESTABLISHED {
		if time.Now().After(deadline) {
			t.Fatal("the connection is still established 10 s after the server went idle: its FIN waits behind output the peer does not read")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
