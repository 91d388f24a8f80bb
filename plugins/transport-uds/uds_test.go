package uds_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel/transporttest"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	uds "github.com/axonrpc/axon/plugins/transport-uds"
)

// shortDir returns a new directory with a short path: t.TempDir() can be
// longer than the 107 bytes a socket path may have.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "axon-uds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

var seq atomic.Int64

func TestConformance(t *testing.T) {
	cases := []struct {
		name    string
		cfg     uds.Config
		address func(testing.TB) string
	}{
		{"file", uds.DefaultConfig(), func(t testing.TB) string {
			return filepath.Join(shortDir(t), "s.sock")
		}},
		{"abstract", uds.Config{Abstract: true}, func(testing.TB) string {
			return fmt.Sprintf("axon-conformance-%d-%d", os.Getpid(), seq.Add(1))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.Abstract && runtime.GOOS != "linux" {
				t.Skip("abstract sockets are Linux only")
			}
			transporttest.Run(t, transporttest.Harness{
				Transport: uds.New(tc.cfg),
				Address:   tc.address,
				Protocol:  native.New(native.DefaultConfig()),
				Codec:     protocodec.Codec{},
			})
		})
	}
}

func listen(t *testing.T, tr *uds.Transport, path string) net.Listener {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := tr.Listen(ctx, path)
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// staleSocket leaves a socket file at path that nobody listens on, as a
// server that died does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("no stale socket at %s: %v", path, err)
	}
}

func TestListen(t *testing.T) {
	tr := uds.New(uds.DefaultConfig())
	cases := []struct {
		name    string
		prepare func(t *testing.T, dir string) string // returns the path to listen on
		wantErr string                                // "" means Listen succeeds
	}{
		{"fresh path", func(t *testing.T, dir string) string { return filepath.Join(dir, "a.sock") }, ""},
		{"stale socket is replaced", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "a.sock")
			staleSocket(t, p)
			return p
		}, ""},
		{"live socket is refused", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "a.sock")
			listen(t, tr, p)
			return p
		}, "is in use by a live server"},
		{"regular file is refused", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "a.sock")
			if err := os.WriteFile(p, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, "exists and is not a socket"},
		{"missing directory", func(t *testing.T, dir string) string { return filepath.Join(dir, "nope", "a.sock") }, "does not exist"},
		{"directory is a file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "f")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(p, "a.sock")
		}, "is not a directory"},
		{"directory owned by another user", func(t *testing.T, dir string) string {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a directory away")
			}
			d := filepath.Join(dir, "theirs")
			if err := os.Mkdir(d, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(d, 4242, 4242); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(d, "a.sock")
		}, "is owned by uid 4242, not by this server's uid"},
		{"relative path", func(*testing.T, string) string { return "a.sock" }, "is not absolute"},
		{"path too long", func(_ *testing.T, dir string) string {
			return filepath.Join(dir, strings.Repeat("x", 120)+".sock")
		}, "the system allows at most 107"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := shortDir(t)
			path := tc.prepare(t, dir)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ln, err := tr.Listen(ctx, path)
			if tc.wantErr != "" {
				if err == nil {
					ln.Close()
					t.Fatalf("listen %s succeeded, want an error containing %q", path, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "transport.uds: ") {
					t.Fatalf("error %q, want one starting with \"transport.uds: \" and containing %q", err, tc.wantErr)
				}
				if strings.Contains(tc.wantErr, "live server") && !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the path", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if got := ln.Addr().String(); got != path {
				t.Errorf("Addr() = %q, want %q", got, path)
			}
			// The socket answers, under its name.
			c, err := tr.Dial(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			// No temporary names are left behind.
			entries, _ := os.ReadDir(filepath.Dir(path))
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".axon-") {
					t.Errorf("temporary socket %s left in the directory", e.Name())
				}
			}
			if err := ln.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket file still there after Close: %v", err)
			}
		})
	}
}

// TestCloseKeepsReplacement: a listener whose file was replaced by another
// server's does not remove that server's file when it closes.
func TestCloseKeepsReplacement(t *testing.T) {
	tr := uds.New(uds.DefaultConfig())
	path := filepath.Join(shortDir(t), "a.sock")
	old := listen(t, tr, path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	listen(t, tr, path)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the new server's socket was removed: %v", err)
	}
}

// TestMode: the socket file gets the configured mode, whatever the umask.
func TestMode(t *testing.T) {
	for _, mode := range []uds.FileMode{0o600, 0o660, 0o666} {
		t.Run(mode.String(), func(t *testing.T) {
			path := filepath.Join(shortDir(t), "m.sock")
			listen(t, uds.New(uds.Config{Mode: mode}), path)
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != os.FileMode(mode) {
				t.Errorf("mode %v, want %v", got, os.FileMode(mode))
			}
		})
	}
}

func TestScheme(t *testing.T) {
	if got := uds.New(uds.DefaultConfig()).Scheme(); got != "unix" {
		t.Errorf("Scheme() = %q, want unix", got)
	}
}

// TestFactory: the options block decodes strictly, and the mode must be a
// quoted octal string.
func TestFactory(t *testing.T) {
	cases := []struct {
		name    string
		opts    map[string]any
		wantErr string
	}{
		{"defaults", nil, ""},
		{"mode and abstract", map[string]any{"mode": "0660", "abstract": true}, ""},
		{"0o form", map[string]any{"mode": "0o640"}, ""},
		{"unquoted octal reads as decimal", map[string]any{"mode": 384}, "listen[0].options.mode"},
		{"no leading zero", map[string]any{"mode": "600"}, "leading zero"},
		{"too many bits", map[string]any{"mode": "01777"}, "0777"},
		{"not octal", map[string]any{"mode": "0800"}, "0777"},
		{"unknown key", map[string]any{"perm": "0600"}, "listen[0].options.perm"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			transporttest.BuildOptions(t, uds.Factory, tc.opts, tc.wantErr)
		})
	}
}
