package impl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestMain gives the run a state directory (for axon-quic's development CA),
// as cmd/echobench does, and removes it afterwards.
func TestMain(m *testing.M) {
	cleanup, err := Setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// TestEcho runs every registered impl in-process: concurrent callers, a few
// calls each, payload sizes including empty.
func TestEcho(t *testing.T) {
	for _, im := range All() {
		t.Run(im.Name(), func(t *testing.T) {
			srv, err := im.Serve("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			const callers = 8
			cl, err := im.Dial(srv.Addr(), callers)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for i := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range 50 {
						p := make([]byte, (i*131+j*17)%3000)
						for k := range p {
							p[k] = byte(i + j + k)
						}
						if err := cl.Call(ctx, p); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestAxonUDSDir checks that axon-uds listens in a directory of its own,
// ignoring the host:port it is given, and removes that directory on Close.
func TestAxonUDSDir(t *testing.T) {
	srv, err := Axon{Transport: "uds"}.Serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	if !filepath.IsAbs(addr) || len(addr) > udsMaxPath {
		srv.Close()
		t.Fatalf("Addr() = %q, want an absolute socket path of at most %d bytes", addr, udsMaxPath)
	}
	if fi, err := os.Stat(addr); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("%s is not a socket: %v", addr, err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(addr)); !os.IsNotExist(err) {
		t.Errorf("socket directory %s still there after Close (stat: %v)", filepath.Dir(addr), err)
	}
}

func TestLookup(t *testing.T) {
	for _, im := range All() {
		if got, ok := Lookup(im.Name()); !ok || got.Name() != im.Name() {
			t.Errorf("Lookup(%q) failed", im.Name())
		}
	}
	if _, ok := Lookup("nope"); ok {
		t.Error("Lookup(nope) succeeded")
	}
}
