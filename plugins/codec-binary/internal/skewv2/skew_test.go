package skewv2_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/fx"
	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/app"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/config"
	"github.com/axonrpc/axon/kernel/status"
	bincodec "github.com/axonrpc/axon/plugins/codec-binary"
	"github.com/axonrpc/axon/plugins/codec-binary/internal/skewv2"
	"github.com/axonrpc/axon/plugins/codec-binary/wire"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
)

// v1 reads a committed file of version 1 of the message (written by the
// skewv1 tests).
func v1(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../skewv1/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.TrimSpace(b)
	if strings.HasSuffix(name, ".hex") {
		if b, err = hex.DecodeString(string(b)); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// v1Schema is what a version-1 client of Events/Put sends as its schema,
// and v1fp version 1's fingerprint of Event.
func v1Schema(t *testing.T) (schema string, v1fp uint64) {
	t.Helper()
	schema = string(v1(t, "event_v1.schema.txt"))
	fp, err := strconv.ParseUint(schema[:16], 16, 64)
	if err != nil {
		t.Fatalf("event_v1.schema.txt: %v", err)
	}
	return schema, fp
}

// oldEvent stands in for a version-1 Event on the wire: it encodes as the
// committed version-1 bytes and has version 1's fingerprint, exactly what a
// version-1 peer sends and expects.
type oldEvent struct {
	fp   uint64
	body []byte
}

func (o *oldEvent) AxonFingerprint() uint64    { return o.fp }
func (o *oldEvent) AxonAppend(b []byte) []byte { return append(b, o.body...) }
func (o *oldEvent) AxonUnmarshal([]byte, wire.Options) error {
	return fmt.Errorf("a version-2 body must never reach a version-1 decoder")
}

// mismatch is the text CompareSchema gives for a message of role
// ("request" or "response") whose fingerprints differ.
func mismatch(role string, sender, receiver uint64) string {
	return fmt.Sprintf("%s message axon.test.skew.Event: schema fingerprint mismatch: sender 0x%016x, receiver 0x%016x", role, sender, receiver)
}

// TestCompareSchema checks a version-2 server's codec against the schemas
// version-1 and version-2 clients send.
func TestCompareSchema(t *testing.T) {
	c := bincodec.New(kernel.Limits{})
	v1s, v1fp := v1Schema(t)
	v2fp := new(skewv2.Event).AxonFingerprint()
	if v1fp == v2fp {
		t.Fatal("versions 1 and 2 have the same fingerprint")
	}
	v2s := c.Schema(new(skewv2.Event), new(skewv2.Event))
	hex16 := func(v uint64) string { return fmt.Sprintf("%016x", v) }
	for _, tc := range []struct {
		name, peer    string
		want, notWant []string // nothing wanted: nil error
	}{
		{name: "same version", peer: v2s},
		{name: "same version, upper case", peer: strings.ToUpper(v2s)},
		{name: "version-1 client", peer: v1s,
			want: []string{mismatch("request", v1fp, v2fp), mismatch("response", v1fp, v2fp)}},
		{name: "version-1 request", peer: hex16(v1fp) + "." + hex16(v2fp),
			want: []string{mismatch("request", v1fp, v2fp)}, notWant: []string{"response"}},
		{name: "version-1 response", peer: hex16(v2fp) + "." + hex16(v1fp),
			want: []string{mismatch("response", v1fp, v2fp)}, notWant: []string{"request"}},
		{name: "empty", peer: "", want: []string{`codec.binary: malformed schema fingerprint "" from the peer`}},
		{name: "one fingerprint", peer: hex16(v2fp), want: []string{"malformed schema fingerprint"}},
		{name: "not hex", peer: "zz" + v2s[2:], want: []string{"malformed schema fingerprint"}},
		{name: "no dot", peer: hex16(v2fp) + "_" + hex16(v2fp), want: []string{"malformed schema fingerprint"}},
		{name: "long", peer: strings.Repeat("a", 1000), want: []string{`"` + strings.Repeat("a", 80) + `..." from the peer`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.CompareSchema(new(skewv2.Event), new(skewv2.Event), tc.peer)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			se := status.FromError(err)
			if se.Code() != status.FailedPrecondition {
				t.Fatalf("got %v, want FAILED_PRECONDITION", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(se.Message(), w) {
					t.Errorf("got  %q\nwant it to contain %q", se.Message(), w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(se.Message(), w) {
					t.Errorf("got  %q\nwant it not to contain %q", se.Message(), w)
				}
			}
		})
	}
}

// TestCheckSchema checks the schemas through the kernel's dispatcher, as a
// protocol does before decoding a call's first message.
func TestCheckSchema(t *testing.T) {
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{skewv2.NewEventsService(&events{})})
	if err != nil {
		t.Fatal(err)
	}
	bin, pb := bincodec.New(kernel.Limits{}), protocodec.Codec{}
	d := kernel.NewDispatcher(table, nil, []kernel.Codec{bin, pb}, kernel.Limits{}, slog.New(slog.DiscardHandler))
	r := d.Route(skewv2.Events_Put_FullMethodName)
	if r == nil {
		t.Fatal("no route for Events/Put")
	}
	v1s, v1fp := v1Schema(t)
	v2fp := new(skewv2.Event).AxonFingerprint()
	for _, tc := range []struct {
		name  string
		codec kernel.Codec
		peer  string
		want  string // "" for nil
	}{
		{"same version", bin, bin.Schema(new(skewv2.Event), new(skewv2.Event)), ""},
		{"version-1 client", bin, v1s, mismatch("request", v1fp, v2fp)},
		{"no schema", bin, "", "needs the caller's schema fingerprint"},
		{"malformed", bin, "v1", "malformed schema fingerprint"},
		{"proto ignores schemas", pb, v1s, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.CheckSchema(r, tc.codec, tc.peer)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if se := status.FromError(err); se.Code() != status.FailedPrecondition || !strings.Contains(se.Message(), tc.want) {
				t.Fatalf("got %v\nwant FAILED_PRECONDITION containing %q", err, tc.want)
			}
		})
	}
}

// TestRawDecodeHasNoSchemaCheck documents that wire.Unmarshal and the
// codec's Unmarshal, used outside a protocol, do not check schemas: only
// the call's schema (CompareSchema) protects the binary codec; the proto
// encoding evolves.
func TestRawDecodeHasNoSchemaCheck(t *testing.T) {
	var e skewv2.Event
	err := bincodec.New(kernel.Limits{}).Unmarshal(v1(t, "event_v1.binary.hex"), &e)
	if status.CodeOf(err) == status.FailedPrecondition {
		t.Fatalf("raw decoding checked a schema: %v", err)
	}
	// The proto encoding evolves: version 2 reads version 1's proto bytes.
	e.Reset()
	if err := proto.Unmarshal(v1(t, "event_v1.proto.hex"), &e); err != nil || e.Id != 42 || e.Name != "from v1" {
		t.Fatalf("proto: got %v, %v", &e, err)
	}
}

type events struct{ calls atomic.Int32 }

func (s *events) Put(_ context.Context, e *skewv2.Event) (*skewv2.Event, error) {
	s.calls.Add(1)
	return e, nil
}

// TestCallAcrossVersions serves version 2 over TCP and calls it as a
// version-1 client would: the protocol sends the client's schema and the
// server checks it before decoding, so a call whose request or response is
// of the old schema is refused before its handler runs, with
// FAILED_PRECONDITION naming the message and both fingerprints.
func TestCallAcrossVersions(t *testing.T) {
	svc := &events{}
	var cat *kernel.Catalog
	var table *kernel.ServiceTable
	fxApp := fx.New(app.Plugins, kernel.Module, fx.NopLogger,
		fx.Supply(slog.New(slog.DiscardHandler)),
		kernel.ProvideService(func() *kernel.ServiceDesc { return skewv2.NewEventsService(svc) }),
		fx.Populate(&cat, &table))
	if err := fxApp.Err(); err != nil {
		t.Fatal(err)
	}
	tree, err := config.LoadBytes("skew.yaml", []byte(`
service: events
tls: {mode: "off"}
listen: [{transport: tcp, address: "127.0.0.1:0"}]
codec: binary
server: {codecs: [binary]}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kernel.ParseConfig(tree)
	if err != nil {
		t.Fatal(err)
	}
	rt := kernel.NewRuntime(cat, table, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(ctx)
	client, err := kernel.BuildClient(cat, cfg, rt.Endpoints()[0].Address, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	_, v1fp := v1Schema(t)
	old := &oldEvent{fp: v1fp, body: v1(t, "event_v1.binary.hex")}
	v2fp := new(skewv2.Event).AxonFingerprint()
	for _, tc := range []struct {
		name      string
		req, resp any
		want      string
	}{
		{"old request", old, new(skewv2.Event), mismatch("request", v1fp, v2fp)},
		{"old response", &skewv2.Event{Id: 7, Name: "from v2", Labels: []string{"new"}}, &oldEvent{fp: v1fp}, mismatch("response", v1fp, v2fp)},
		{"old request and response", old, &oldEvent{fp: v1fp}, mismatch("request", v1fp, v2fp)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := svc.calls.Load()
			err := client.Invoke(ctx, skewv2.Events_Put_FullMethodName, tc.req, tc.resp)
			se := status.FromError(err)
			if se.Code() != status.FailedPrecondition || !strings.Contains(se.Message(), tc.want) {
				t.Fatalf("got %v\nwant FAILED_PRECONDITION containing %q", err, tc.want)
			}
			if n := svc.calls.Load() - before; n != 0 {
				t.Fatalf("the handler ran %d times, want 0", n)
			}
		})
	}
	// Same versions work.
	out, err := skewv2.NewEventsClient(client).Put(ctx, &skewv2.Event{Id: 1, Labels: []string{"a"}})
	if err != nil || out.Id != 1 || len(out.Labels) != 1 {
		t.Fatalf("got %v, %v", out, err)
	}
}
