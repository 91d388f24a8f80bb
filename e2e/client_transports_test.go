package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/axonrpc/axon/kernel"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	static "github.com/axonrpc/axon/plugins/registry-static"
	quic "github.com/axonrpc/axon/plugins/transport-quic"
)

// TestClientTransportOptions: a client's transports take their options from
// client.transports.<name>.options. A QUIC server whose development CA lives
// in its own folder is trusted only by a client pointed at that folder.
func TestClientTransportOptions(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir()) // the default folder holds no CA of this server
	caDir := t.TempDir()
	rt, cat := newTestRuntime(t, native.Factory, protocodec.Factory, static.Factory, quic.Factory)
	if err := rt.Apply(context.Background(), parseConfig(t, fmt.Sprintf(`service: q
tls: {mode: "off"}
registry: {use: static}
listen: [{transport: quic, address: "127.0.0.1:0", options: {state_dir: %q}}]
`, caDir))); err != nil {
		t.Fatal(err)
	}
	target := rt.Endpoints()[0].Address

	cases := []struct {
		name       string
		transports string
		buildErr   string // BuildClient fails with this
		callErr    string // the call fails with this; "" means it succeeds
	}{
		{"default options do not trust the server", "{}", "", "no ca_file is configured and there is no development CA"},
		{"the server's CA folder", fmt.Sprintf("{quic: {options: {state_dir: %q}}}", caDir), "", ""},
		{"unknown option", "{quic: {options: {stat_dir: x}}}", "client.transports.quic.options.stat_dir: unknown key", ""},
		{"unknown transport", "{quick: {}}", `client.transports.quick: kernel: unknown transport plugin "quick" (known: quic)`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := parseConfig(t, "service: q\ntls: {mode: \"off\"}\nregistry: {use: static}\nclient: {dial_timeout: 3s, transports: "+c.transports+"}\n")
			client, err := kernel.BuildClient(cat, cfg, target, nil)
			if c.buildErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.buildErr) {
					t.Fatalf("BuildClient error %v, want one containing %q", err, c.buildErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			got, err := say(ctx, client, mEcho, "over quic")
			switch {
			case c.callErr == "" && (err != nil || got != "over quic"):
				t.Fatalf("call: %q, %v", got, err)
			case c.callErr != "" && (err == nil || !strings.Contains(err.Error(), c.callErr)):
				t.Fatalf("call error %v, want one containing %q", err, c.callErr)
			}
		})
	}
}
