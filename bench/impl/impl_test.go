package impl

import (
	"context"
	"sync"
	"testing"
	"time"
)

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
