package skewv2_test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
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
)

// v1 reads a committed encoding of version 1 of the message (written by
// the skewv1 tests).
func v1(t *testing.T, name string) []byte {
	t.Helper()
	h, err := os.ReadFile("../skewv1/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(h)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// oldEvent stands in for a version-1 Event on the wire: it encodes as the
// committed version-1 bytes and has version 1's fingerprint, exactly what a
// version-1 peer sends and expects.
type oldEvent struct {
	fp   uint64
	body []byte
}

func newOldEvent(b []byte) *oldEvent {
	return &oldEvent{fp: binary.LittleEndian.Uint64(b), body: b[wire.FingerprintLen:]}
}

func (o *oldEvent) AxonFingerprint() uint64    { return o.fp }
func (o *oldEvent) AxonAppend(b []byte) []byte { return append(b, o.body...) }
func (o *oldEvent) AxonDecode(*wire.Decoder) error {
	return fmt.Errorf("a version-1 body must never reach the decoder")
}
func (o *oldEvent) Reset() {}

func mismatch(sender, receiver uint64) string {
	return fmt.Sprintf("message axon.test.skew.Event: schema fingerprint mismatch: sender 0x%016x, receiver 0x%016x", sender, receiver)
}

func TestDecodeV1AsV2(t *testing.T) {
	b := v1(t, "event_v1.binary.hex")
	old := newOldEvent(b)
	v2fp := new(skewv2.Event).AxonFingerprint()
	if old.fp == v2fp {
		t.Fatal("versions 1 and 2 have the same fingerprint")
	}
	err := bincodec.New(kernel.Limits{}).Unmarshal(b, new(skewv2.Event))
	if se := status.FromError(err); se.Code() != status.FailedPrecondition || !strings.HasPrefix(se.Message(), mismatch(old.fp, v2fp)) {
		t.Fatalf("got %v, want FAILED_PRECONDITION %q", err, mismatch(old.fp, v2fp))
	}
	// The proto encoding evolves: version 2 reads version 1's proto bytes.
	var e skewv2.Event
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
// version-1 client would: a request of the old schema is refused before the
// handler runs, and a response of the new schema is refused by the old
// client, both with FAILED_PRECONDITION naming both fingerprints.
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

	old := newOldEvent(v1(t, "event_v1.binary.hex"))
	v2fp := new(skewv2.Event).AxonFingerprint()
	for _, tc := range []struct {
		name      string
		req, resp any
		want      string
		handled   int32
	}{
		{"old request", old, new(skewv2.Event), mismatch(old.fp, v2fp), 0},
		// The stand-in has no descriptor, so the error names its Go type.
		{"old response", &skewv2.Event{Id: 7, Name: "from v2", Labels: []string{"new"}}, &oldEvent{fp: old.fp},
			fmt.Sprintf("message *skewv2_test.oldEvent: schema fingerprint mismatch: sender 0x%016x, receiver 0x%016x", v2fp, old.fp), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := svc.calls.Load()
			err := client.Invoke(ctx, skewv2.Events_Put_FullMethodName, tc.req, tc.resp)
			se := status.FromError(err)
			if se.Code() != status.FailedPrecondition || !strings.HasPrefix(se.Message(), tc.want) {
				t.Fatalf("got %v\nwant FAILED_PRECONDITION %q", err, tc.want)
			}
			if n := svc.calls.Load() - before; n != tc.handled {
				t.Fatalf("the handler ran %d times, want %d", n, tc.handled)
			}
		})
	}
	// Same versions work.
	out, err := skewv2.NewEventsClient(client).Put(ctx, &skewv2.Event{Id: 1, Labels: []string{"a"}})
	if err != nil || out.Id != 1 || len(out.Labels) != 1 {
		t.Fatalf("got %v, %v", out, err)
	}
}
