package app

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/axonrpc/axon/kernel"
	devcreds "github.com/axonrpc/axon/plugins/credentials-dev"
)

// devCert writes a certificate from the dev credentials of a config, so
// that a tool that reads PEM files (grpcurl, a browser) can call a server
// that uses them with mutual TLS.
func devCert(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev-cert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (YAML) whose tls block uses credentials: dev")
	out := fs.String("out", "", "directory to write ca.pem, cert.pem and key.pem into")
	name := fs.String("name", "dev-cert", "the identity's path: spiffe://<trust_domain>/<name>")
	if err := fs.Parse(args); err != nil || *path == "" || *out == "" {
		fmt.Fprint(stderr, "axon dev-cert: --config FILE and --out DIR are required\n")
		return 2
	}
	cfg, err := kernel.LoadConfig(*path, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "axon dev-cert: %v\n", err)
		return 1
	}
	if cfg.TLS.Credentials != "dev" {
		fmt.Fprintf(stderr, "axon dev-cert: %s: tls.credentials is %q, not dev\n", *path, cfg.TLS.Credentials)
		return 1
	}
	dc := devcreds.DefaultConfig()
	if err := cfg.TLS.Options.Decode(&dc); err != nil {
		fmt.Fprintf(stderr, "axon dev-cert: %v\n", err)
		return 1
	}
	ca, cert, key, err := devcreds.WriteFiles(dc, *name, *out)
	if err != nil {
		fmt.Fprintf(stderr, "axon dev-cert: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "ca %s\ncert %s\nkey %s\n", ca, cert, key)
	return 0
}
