package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/axonrpc/axon/bench/impl"
)

// serveChild is the server process: `echobench -serve IMPL -addr ADDR
// [-cpuprofile FILE]`. It prints its listen address as the first line of stdout, then serves
// until stdin reaches EOF (the parent closed it or died) or it is signalled,
// so a server never outlives its parent.
func serveChild(name, addr, cpuprofile string) int {
	im, ok := impl.Lookup(name)
	if !ok {
		fmt.Fprintf(os.Stderr, "echobench -serve: unknown impl %q\n", name)
		return 2
	}
	srv, err := im.Serve(addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "echobench -serve %s: %v\n", name, err)
		return 1
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "echobench -serve %s: cpu profile: %v\n", name, err)
			srv.Close()
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	fmt.Println(srv.Addr())

	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin) //nolint:errcheck // any end of stdin means stop
		close(done)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-done:
	case <-sig:
	}
	srv.Close()
	return 0
}
