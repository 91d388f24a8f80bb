package kernel

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/axonrpc/axon/kernel/config"
)

// optProtocol is a protocol whose config is recorded when it is built.
type optProtocol struct{ cfg optConfig }

type optConfig struct {
	Greeting string `yaml:"greeting"`
}

func (optProtocol) NewServer(*Dispatcher) ServerConn { return nil }
func (optProtocol) NewSession(net.Conn, SessionOptions) (Session, error) {
	return nil, nil
}
func (optProtocol) Match([]byte) Match { return MatchNo }

type nopCodec struct{}

func (nopCodec) Name() string                              { return "proto" }
func (nopCodec) Marshal(dst []byte, _ any) ([]byte, error) { return dst, nil }
func (nopCodec) Unmarshal([]byte, any) error               { return nil }

type nopResolver struct{}

func (nopResolver) Resolve(context.Context, string) ([]Endpoint, error) { return nil, nil }

type nopTransport struct{}

func (nopTransport) Listen(context.Context, string) (net.Listener, error) { return nil, nil }
func (nopTransport) Dial(context.Context, string) (net.Conn, error)       { return nil, nil }

func TestListenProtocolOptions(t *testing.T) {
	built := map[string]optConfig{}
	protoFactory := func(name string) Factory {
		return NewFactory(KindProtocol, name, func() optConfig { return optConfig{Greeting: "default"} },
			func(_ BuildContext, c optConfig) (Protocol, error) { built[name] = c; return optProtocol{c}, nil })
	}
	cat, err := NewCatalog([]Factory{
		protoFactory("p1"), protoFactory("p2"),
		NewFactory(KindCodec, "proto", func() struct{} { return struct{}{} }, func(BuildContext, struct{}) (Codec, error) { return nopCodec{}, nil }),
		NewFactory(KindRegistry, "local", func() struct{} { return struct{}{} }, func(BuildContext, struct{}) (Resolver, error) { return nopResolver{}, nil }),
		NewFactory(KindTransport, "tcp", func() struct{} { return struct{}{} }, func(BuildContext, struct{}) (Transport, error) { return nopTransport{}, nil }),
	})
	if err != nil {
		t.Fatal(err)
	}
	table, _ := NewServiceTable(nil)
	for _, tc := range []struct {
		name   string
		listen string
		want   map[string]optConfig
		err    string
	}{
		{"none", `{address: "127.0.0.1:1", protocols: [p1, p2]}`, map[string]optConfig{"p1": {"default"}, "p2": {"default"}}, ""},
		{"one protocol's", `{address: "127.0.0.1:1", protocols: [p1, p2], protocol_options: {p2: {greeting: hi}}}`, map[string]optConfig{"p1": {"default"}, "p2": {"hi"}}, ""},
		{"unknown key", `{address: "127.0.0.1:1", protocols: [p1], protocol_options: {p1: {greting: hi}}}`, nil, "listen[0].protocol_options.p1.greting"},
		{"protocol not on the listener", `{address: "127.0.0.1:1", protocols: [p1], protocol_options: {p2: {greeting: hi}}}`, nil, "listen[0].protocol_options.p2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clear(built)
			tree, err := config.LoadBytes("test", []byte("service: s\ntls: {mode: \"off\"}\nlisten: ["+tc.listen+"]\n"), nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := ParseConfig(tree)
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil {
				r := NewRuntime(cat, table, slog.New(slog.DiscardHandler))
				var g *generation
				if g, err = r.build(1, cfg, nil); err == nil {
					g.discard(nil)
				}
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error at %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				if built[name] != want {
					t.Errorf("%s built with %+v, want %+v", name, built[name], want)
				}
			}
		})
	}
}

// TestListenAddresses: two listeners may not share an address, except port
// 0, which gives each its own port.
func TestListenAddresses(t *testing.T) {
	for _, tc := range []struct {
		name, listen, err string
	}{
		{"distinct", `{address: "127.0.0.1:7001"}, {address: "127.0.0.1:7002"}`, ""},
		{"same", `{address: "127.0.0.1:7001"}, {address: "127.0.0.1:7001"}`, "listen[1].address"},
		{"same on two transports", `{address: "127.0.0.1:7001"}, {transport: quic, address: "127.0.0.1:7001"}`, ""},
		{"port 0 twice", `{address: "127.0.0.1:0"}, {address: "127.0.0.1:0"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree, err := config.LoadBytes("test", []byte("service: s\ntls: {mode: \"off\"}\nlisten: ["+tc.listen+"]\n"), nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := ParseConfig(tree)
			if err == nil {
				err = cfg.Validate()
			}
			if tc.err == "" && err != nil {
				t.Fatal(err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %v, want an error at %s", err, tc.err)
			}
		})
	}
}
