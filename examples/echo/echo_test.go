package echo_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/app"
	"github.com/axonrpc/axon/examples/echo"
	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/status"
)

// configYAML is a server on a free port accepting codecs, whose clients
// send codec.
func configYAML(codec, codecs string) string {
	return fmt.Sprintf(`
service: echo
tls: {mode: "off"}
listen: [{transport: tcp, address: "127.0.0.1:0"}]
codec: %s
server: {codecs: %s}
`, codec, codecs)
}

func parse(t *testing.T, text string) *kernel.Config {
	t.Helper()
	tree, err := config.LoadBytes("test.yaml", []byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kernel.ParseConfig(tree)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serve runs the example service with the standard plugin set, as
// `axon serve` does, and returns its catalog and address.
func serve(t *testing.T, codecs string) (*kernel.Catalog, string) {
	t.Helper()
	var cat *kernel.Catalog
	var table *kernel.ServiceTable
	a := fx.New(app.Plugins, kernel.Module, echo.Module, fx.NopLogger,
		fx.Supply(slog.New(slog.DiscardHandler)), fx.Populate(&cat, &table))
	if err := a.Err(); err != nil {
		t.Fatal(err)
	}
	rt := kernel.NewRuntime(cat, table, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.Apply(ctx, parse(t, configYAML("proto", codecs))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rt.Shutdown(ctx)
	})
	return cat, rt.Endpoints()[0].Address
}

// client returns a generated Echo client sending codec to addr.
func client(t *testing.T, cat *kernel.Catalog, addr, codec string) echopb.EchoClient {
	t.Helper()
	c, err := kernel.BuildClient(cat, parse(t, configYAML(codec, "[proto]")), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return echopb.NewEchoClient(c)
}

func TestEveryCodec(t *testing.T) {
	cat, addr := serve(t, "[binary, proto, json]")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	order := &echopb.Order{
		Id:       7,
		Customer: &echopb.Customer{Name: "Ada", Address: &echopb.Address{City: "Zürich", Country: "CH"}},
		Items:    []*echopb.Item{{Sku: 1, Quantity: 2, Price: 150}, {Sku: 2, Quantity: 1, Price: 99}},
		Tags:     map[string]string{"b": "2", "a": "1"},
	}
	for _, codec := range []string{"binary", "proto", "json"} {
		t.Run(codec, func(t *testing.T) {
			c := client(t, cat, addr, codec)
			r, err := c.Say(ctx, &echopb.SayRequest{Text: "hi, " + codec})
			if err != nil || r.GetText() != "hi, "+codec {
				t.Fatalf("Say: %v, %v", r, err)
			}
			sum, err := c.Summarize(ctx, order)
			if err != nil {
				t.Fatal(err)
			}
			if sum.GetTotal() != 399 || sum.GetItemCount() != 2 || sum.GetShipTo() != "Zürich, CH" || !slices.Equal(sum.GetTagKeys(), []string{"a", "b"}) {
				t.Fatalf("Summarize: %v", sum)
			}
			_, err = c.Say(ctx, &echopb.SayRequest{})
			if se := status.FromError(err); se.Code() != status.InvalidArgument || se.Message() != "text is empty" {
				t.Fatalf("empty Say: %v", err)
			}
		})
	}
}

func TestCodecNotAccepted(t *testing.T) {
	cat, addr := serve(t, "[proto, json]")
	_, err := client(t, cat, addr, "binary").Say(context.Background(), &echopb.SayRequest{Text: "hi"})
	se := status.FromError(err)
	if se.Code() != status.Unimplemented || se.Message() != `codec "binary" is not accepted by this server (accepted: json, proto)` {
		t.Fatalf("got %v", err)
	}
}

func TestUnknownCodec(t *testing.T) {
	cat, addr := serve(t, "[proto]")
	_, err := kernel.BuildClient(cat, parse(t, configYAML("xml", "[proto]")), addr, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown codec plugin "xml" (known: binary, json, proto)`) {
		t.Fatalf("got %v", err)
	}
}

// TestAxonCall is the newcomer's path: `axon call` reads the request as
// JSON and sends it with the codec of the config file.
func TestAxonCall(t *testing.T) {
	_, addr := serve(t, "[binary, proto, json]")
	for _, codec := range []string{"binary", "proto", "json"} {
		path := filepath.Join(t.TempDir(), "axon.yaml")
		if err := os.WriteFile(path, []byte(configYAML(codec, "[proto]")), 0o644); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		code := app.Main([]string{"call", "--config", path, "--target", addr, "axon.example.v1.Echo/Summarize",
			`{"id": 3, "items": [{"sku": "5", "quantity": 2, "price": "21"}], "tags": {"k": "v"}}`}, &out, &errOut, echo.Module)
		if code != 0 || !strings.Contains(out.String(), `"total": "42"`) || !strings.Contains(out.String(), `"tagKeys": [`) {
			t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", codec, code, out.String(), errOut.String())
		}
	}
}
