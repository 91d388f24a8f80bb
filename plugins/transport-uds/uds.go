package uds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/axonrpc/axon/kernel"
)

// maxPath is the longest socket path the kernel takes: sun_path holds 108
// bytes including the terminating NUL.
const maxPath = 107

// probeTimeout bounds the connect that tells a live socket from a stale one.
const probeTimeout = time.Second

// Transport listens and dials Unix domain sockets. It is safe for concurrent
// use. Addresses are absolute filesystem paths ("/run/axon/echo.sock"); with
// Abstract they are names in the abstract namespace.
type Transport struct{ cfg Config }

// New returns a Unix domain socket transport with cfg.
func New(cfg Config) *Transport { return &Transport{cfg: cfg} }

var _ kernel.Schemer = (*Transport)(nil)

// Scheme returns "unix": endpoints of this transport are written
// "unix:///run/axon/echo.sock".
func (t *Transport) Scheme() string { return "unix" }

// Listen implements kernel.Transport. For a file socket, the directory must
// exist and belong to this process's user. A socket file left behind by a
// server that is gone is replaced; one that a live server answers on is an
// error naming the path. The file gets the configured mode before any
// client can reach it under its name, and is removed when the listener
// closes (unless another server has replaced it meanwhile).
func (t *Transport) Listen(ctx context.Context, address string) (net.Listener, error) {
	name, err := t.name(address)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(name, "@") {
		ln, err := listenUnix(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("transport.uds: %w", err)
		}
		return &listener{UnixListener: ln, addr: ln.Addr()}, nil
	}
	if !filepath.IsAbs(name) {
		return nil, fmt.Errorf("transport.uds: socket path %q is not absolute", address)
	}
	name = filepath.Clean(name)
	if err := checkDir(filepath.Dir(name)); err != nil {
		return nil, fmt.Errorf("transport.uds: listen %s: %w", name, err)
	}
	ln, err := t.listenFile(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("transport.uds: %w", err)
	}
	return ln, nil
}

// Dial implements kernel.Transport.
func (t *Transport) Dial(ctx context.Context, address string) (net.Conn, error) {
	name, err := t.name(address)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", name)
	if err != nil {
		return nil, fmt.Errorf("transport.uds: %w", err)
	}
	return c, nil
}

// name returns the socket name for address: "@name" for an abstract socket.
func (t *Transport) name(address string) (string, error) {
	if address == "" {
		return "", errors.New("transport.uds: empty socket path")
	}
	if t.cfg.Abstract {
		if runtime.GOOS != "linux" {
			return "", fmt.Errorf("transport.uds: abstract sockets exist only on Linux, not %s", runtime.GOOS)
		}
		if !strings.HasPrefix(address, "@") {
			address = "@" + address
		}
	}
	if len(address) > maxPath {
		return "", fmt.Errorf("transport.uds: socket path %q is %d bytes long; the system allows at most %d", address, len(address), maxPath)
	}
	return address, nil
}

// listenFile binds path. It binds a temporary name in the same directory,
// sets the mode, and then links the socket to path, which fails if anything
// is there; a stale socket is removed and the link tried again. So a client
// never sees the socket with the wrong mode, and two servers starting at
// once cannot both win.
func (t *Transport) listenFile(ctx context.Context, path string) (*listener, error) {
	tmp := filepath.Join(filepath.Dir(path), ".axon-"+randomHex(4)+".sock")
	if len(tmp) > maxPath {
		// The directory leaves no room for a temporary name: bind path
		// itself and set the mode right after.
		if err := clearStale(ctx, path); err != nil {
			return nil, err
		}
		return t.bind(ctx, path, path)
	}
	ln, err := t.bind(ctx, tmp, path)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		err := os.Link(tmp, path)
		if err == nil {
			break
		}
		if errors.Is(err, fs.ErrExist) && attempt < 3 {
			if err := clearStale(ctx, path); err != nil {
				ln.abort(tmp)
				return nil, err
			}
			continue
		}
		if errors.Is(err, fs.ErrExist) {
			ln.abort(tmp)
			return nil, fmt.Errorf("%s keeps reappearing; another server is starting there", path)
		}
		// The filesystem does not do hard links: check, then rename.
		if err := clearStale(ctx, path); err != nil {
			ln.abort(tmp)
			return nil, err
		}
		if err := os.Rename(tmp, path); err != nil {
			ln.abort(tmp)
			return nil, err
		}
		break
	}
	os.Remove(tmp)
	fi, err := os.Lstat(path)
	if err != nil {
		ln.UnixListener.Close()
		return nil, err
	}
	ln.file = fi
	return ln, nil
}

// bind listens on name, which will be known as path, with the configured
// mode.
func (t *Transport) bind(ctx context.Context, name, path string) (*listener, error) {
	ul, err := listenUnix(ctx, name)
	if err != nil {
		return nil, err
	}
	ul.SetUnlinkOnClose(false)
	ln := &listener{UnixListener: ul, addr: &net.UnixAddr{Name: path, Net: "unix"}, path: path}
	if err := os.Chmod(name, os.FileMode(t.cfg.Mode)); err != nil {
		ln.abort(name)
		return nil, err
	}
	if name == path {
		fi, err := os.Lstat(path)
		if err != nil {
			ln.abort(name)
			return nil, err
		}
		ln.file = fi
	}
	return ln, nil
}

func listenUnix(ctx context.Context, name string) (*net.UnixListener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", name)
	if err != nil {
		return nil, err
	}
	return ln.(*net.UnixListener), nil
}

// clearStale removes the socket file at path if no server answers on it.
// Nothing at path is fine; a live server, a file that is not a socket, or a
// socket whose state cannot be told is an error naming path.
func clearStale(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another path", path)
	}
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("%s is in use by a live server", path)
	case errors.Is(err, syscall.ECONNREFUSED):
		// Left behind by a server that is gone.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale socket: %w", err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("%s exists and cannot be probed (is a server using it?): %w", path, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// listener is a Unix listener that reports the socket's final path and
// removes its file on Close.
type listener struct {
	*net.UnixListener
	addr net.Addr
	path string      // "" for an abstract socket
	file os.FileInfo // the socket file as bound, to recognise it on Close
	once sync.Once
}

// Addr returns the socket's path (or "@name").
func (l *listener) Addr() net.Addr { return l.addr }

// Close stops accepting and removes the socket file if it is still this
// listener's. Accepted connections stay open.
func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if l.path == "" || l.file == nil {
			return
		}
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.file) {
			os.Remove(l.path)
		}
	})
	return err
}

// abort closes a listener that never became ready and removes name.
func (l *listener) abort(name string) {
	l.UnixListener.Close()
	os.Remove(name)
}
