package e2e_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/axonrpc/axon/examples/echo/echopb"
	"github.com/axonrpc/axon/kernel"
	"github.com/axonrpc/axon/kernel/metadata"
	kstatus "github.com/axonrpc/axon/kernel/status"
	"github.com/axonrpc/axon/kernel/tlstest"
	protocodec "github.com/axonrpc/axon/plugins/codec-proto"
	files "github.com/axonrpc/axon/plugins/credentials-files"
	native "github.com/axonrpc/axon/plugins/protocol-axon"
	static "github.com/axonrpc/axon/plugins/registry-static"
	quic "github.com/axonrpc/axon/plugins/transport-quic"
)

// whoamiFactory builds a server interceptor that answers, in the trailer
// peer-identity, the verified identity of the caller (kernel.PeerIdentity).
var whoamiFactory = kernel.NewFactory(kernel.KindInterceptor, "whoami", func() struct{} { return struct{}{} },
	func(kernel.BuildContext, struct{}) (kernel.Interceptor, error) {
		return kernel.Interceptor{Server: func(ctx context.Context, req any, next kernel.UnaryHandler) (any, error) {
			if err := kernel.SetTrailer(ctx, metadata.New("peer-identity", kernel.PeerIdentity(ctx))); err != nil {
				return nil, err
			}
			return next(ctx, req)
		}}, nil
	})

// tlsFiles is a YAML tls block of files credentials.
func tlsFiles(mode string, f tlstest.Files) string {
	return fmt.Sprintf("{mode: %s, ca_file: %q, cert_file: %q, key_file: %q}", mode, f.CA, f.Cert, f.Key)
}

// TestMutualTLS: a listener in mutual mode (the default) serves the native
// protocol and gRPC on one port over TLS 1.3, picked by ALPN; callers with
// a certificate from the trusted CA get through and the handler sees
// their identity; every other caller fails its handshake with an error
// that says why.
func TestMutualTLS(t *testing.T) {
	ca, rogue := tlstest.NewCA(t, "test CA"), tlstest.NewCA(t, "rogue CA")
	srvFiles := tlstest.Write(t, t.TempDir(), ca.PEM, ca.Issue(t, "spiffe://test/server", tlstest.Opts{}))
	srv := startServer(t, srvConf{Protocols: "[axon, grpc]", TLS: tlsFiles("mutual", srvFiles), Intercept: "[{use: whoami}]"})
	addr := srv.addr()

	client := tlstest.Write(t, t.TempDir(), ca.PEM, ca.Issue(t, "spiffe://test/client", tlstest.Opts{}))
	// Trusting both CAs, so that its own certificate is a valid set.
	roguesClient := tlstest.Write(t, t.TempDir(), append(append([]byte{}, ca.PEM...), rogue.PEM...), rogue.Issue(t, "spiffe://test/client", tlstest.Opts{}))
	caAsLeaf := ca.Issue(t, "spiffe://test/ca-leaf", tlstest.Opts{IsCA: true})
	nativeCall := func(tlsBlock string) (string, error) {
		cfg := parseConfig(t, "service: cli\nregistry: {use: static}\nclient: {dial_timeout: 5s}\ntls: "+tlsBlock+"\n")
		c, err := kernel.BuildClient(srv.cat, cfg, addr, nil)
		if err != nil {
			return "", err
		}
		defer c.Close()
		var tr metadata.MD
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_, err = say(ctx, c, mEcho, "hi", kernel.Trailer(&tr))
		return tr.Get("peer-identity"), err
	}
	grpcCall := func(cert *tls.Certificate) (string, error) {
		conf := &tls.Config{RootCAs: tlstest.Pool(ca), ServerName: "localhost", MinVersion: tls.VersionTLS13}
		if cert != nil {
			conf.Certificates = []tls.Certificate{*cert}
		}
		cc, err := grpc.NewClient(hostPort(addr), grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			return "", err
		}
		defer cc.Close()
		var tr grpcmd.MD
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		err = cc.Invoke(ctx, mEcho, &echopb.SayRequest{Text: "hi"}, new(echopb.SayResponse), grpc.Trailer(&tr))
		if v := tr.Get("peer-identity"); len(v) > 0 {
			return v[0], err
		}
		return "", err
	}
	clientLeaf := ca.Issue(t, "spiffe://test/grpc-client", tlstest.Opts{})
	for _, tc := range []struct {
		name string
		call func() (string, error)
		id   string   // the identity the handler saw, on success
		want []string // in the error, on failure
	}{
		{"axon, mutual", func() (string, error) { return nativeCall(tlsFiles("mutual", client)) }, "spiffe://test/client", nil},
		{"grpc-go, mutual", func() (string, error) { return grpcCall(&clientLeaf.TLS) }, "spiffe://test/grpc-client", nil},
		{"axon, plaintext", func() (string, error) { return nativeCall(`{mode: "off"}`) }, "", []string{"UNAVAILABLE", "requires TLS", "tls.mode"}},
		{"axon, no client certificate", func() (string, error) {
			return nativeCall(fmt.Sprintf("{mode: server, ca_file: %q}", client.CA))
		}, "", []string{"tls", "certificate required"}},
		{"axon, certificate of another CA", func() (string, error) { return nativeCall(tlsFiles("mutual", roguesClient)) }, "", []string{"tls", "unknown certificate authority"}},
		{"grpc-go, no client certificate", func() (string, error) { return grpcCall(nil) }, "", []string{"Unavailable"}},
		{"grpc-go, a CA certificate as its own", func() (string, error) { return grpcCall(&caAsLeaf.TLS) }, "", []string{"Unavailable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.call()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("call failed: %v", err)
				}
				if id != tc.id {
					t.Errorf("the handler saw identity %q, want %q", id, tc.id)
				}
				return
			}
			if err == nil {
				t.Fatal("the call succeeded")
			}
			msg := err.Error()
			if s, ok := status.FromError(err); ok {
				msg = s.Code().String() + ": " + s.Message()
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
		})
	}
}

// TestTLSLiveView: the live view shows the TLS version and the verified
// peer identity of a server's connections and a client's sessions.
func TestTLSLiveView(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	srv := startServer(t, srvConf{TLS: tlsFiles("mutual", tlstest.Write(t, t.TempDir(), ca.PEM, ca.Issue(t, "spiffe://test/server", tlstest.Opts{})))})
	cfg := parseConfig(t, "service: cli\nregistry: {use: static}\ntls: "+tlsFiles("mutual", tlstest.Write(t, t.TempDir(), ca.PEM, ca.Issue(t, "spiffe://test/client", tlstest.Opts{})))+"\n")
	c, err := kernel.BuildClient(srv.cat, cfg, srv.addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustSay(t, c, mEcho, "hi")
	conns := srv.rt.Snapshot().Generations[0].Listeners[0].Conns
	if len(conns) != 1 || conns[0].TLSVersion != "TLS 1.3" || conns[0].PeerIdentity != "spiffe://test/client" {
		t.Errorf("server connections %+v, want one over TLS 1.3 from spiffe://test/client", conns)
	}
	sess := c.Sessions()
	if len(sess) != 1 || sess[0].TLSVersion != "TLS 1.3" || sess[0].PeerIdentity != "spiffe://test/server" {
		t.Errorf("client sessions %+v, want one over TLS 1.3 to spiffe://test/server", sess)
	}
}

// TestDevCredentials: with the dev credentials, a server and a client on
// one machine share a development CA and call each other over mutual TLS
// with no files; each is named spiffe://axon.local/<service>.
func TestDevCredentials(t *testing.T) {
	dir := t.TempDir()
	block := fmt.Sprintf("{credentials: dev, options: {state_dir: %q}}", dir)
	srv := startServer(t, srvConf{TLS: block, Intercept: "[{use: whoami}]"})
	c, err := kernel.BuildClient(srv.cat, parseConfig(t, "service: cli\nregistry: {use: static}\ntls: "+block+"\n"), srv.addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var tr metadata.MD
	mustSay(t, c, mEcho, "hi", kernel.Trailer(&tr))
	if got := tr.Get("peer-identity"); got != "spiffe://axon.local/cli" {
		t.Errorf("the handler saw %q, want spiffe://axon.local/cli", got)
	}
	if s := c.Sessions(); len(s) != 1 || s[0].PeerIdentity != "spiffe://axon.local/test" {
		t.Errorf("client sessions %+v, want one to spiffe://axon.local/test", s)
	}
}

// TestTLSConfigErrors: TLS blocks that cannot work are refused when the
// configuration is applied, naming the key, and the running configuration
// keeps serving.
func TestTLSConfigErrors(t *testing.T) {
	srv := startServer(t, srvConf{})
	c := newClient(t, srv.addr(), 1)
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "test CA")
	f := tlstest.Write(t, dir, ca.PEM, ca.Issue(t, "spiffe://test/server", tlstest.Opts{}))
	for _, tc := range []struct {
		tls  string
		want string
	}{
		{"{mode: mutual}", "tls.ca_file"},
		{fmt.Sprintf("{mode: mutual, cert_file: %q, key_file: %q}", f.Cert, f.Key), "tls: tls mode mutual on a listener needs the CAs to trust (ca_file)"},
		{fmt.Sprintf("{mode: mutual, ca_file: %q, cert_file: %q, key_file: %q}", f.CA, f.Cert, f.CA), "key_file"},
		{fmt.Sprintf("{mode: mutual, ca_file: %q, cert_file: %q, key_file: %q}", f.CA, dir+"/missing.pem", f.Key), "missing.pem"},
		{"{credentials: vault}", "tls.credentials: kernel: unknown credentials plugin \"vault\""},
	} {
		err := srv.apply(srvConf{TLS: tc.tls})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tls %s: apply error %v, want one saying %q", tc.tls, err, tc.want)
		}
	}
	mustSay(t, c, mEcho, "still serving")
}

// TestQUICMutualTLS: a QUIC listener takes the tls block like any other:
// in mutual mode it asks for client certificates and the handler sees the
// caller's identity; a client without one is refused.
func TestQUICMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	cat, err := kernel.NewCatalog([]kernel.Factory{quic.Factory, native.Factory, protocodec.Factory, static.Factory, files.Factory, whoamiFactory})
	if err != nil {
		t.Fatal(err)
	}
	svc := newTestService()
	table, err := kernel.NewServiceTable([]*kernel.ServiceDesc{svc.desc()})
	if err != nil {
		t.Fatal(err)
	}
	rt := kernel.NewRuntime(cat, table, nil)
	srvTLS := tlsFiles("mutual", tlstest.Write(t, t.TempDir(), ca.PEM, ca.Issue(t, "spiffe://test/server", tlstest.Opts{})))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := rt.Apply(ctx, parseConfig(t, "service: q\nregistry: {use: static}\ntls: "+srvTLS+
		"\nlisten: [{transport: quic, address: \"127.0.0.1:0\"}]\nserver: {interceptors: [{use: whoami}]}\n")); err != nil {
		t.Fatal(err)
	}
	defer rt.Shutdown(ctx)
	addr := rt.Endpoints()[0].Address

	call := func(tlsBlock string) (string, error) {
		c, err := kernel.BuildClient(cat, parseConfig(t, "service: cli\nregistry: {use: static}\ntls: "+tlsBlock+"\n"), addr, nil)
		if err != nil {
			return "", err
		}
		defer c.Close()
		var tr metadata.MD
		_, err = say(ctx, c, mEcho, "hi", kernel.Trailer(&tr))
		return tr.Get("peer-identity"), err
	}
	client := tlstest.Write(t, t.TempDir(), ca.PEM, ca.Issue(t, "spiffe://test/client", tlstest.Opts{}))
	if id, err := call(tlsFiles("mutual", client)); err != nil || id != "spiffe://test/client" {
		t.Errorf("mutual TLS over QUIC: identity %q, %v; want spiffe://test/client", id, err)
	}
	if _, err := call(fmt.Sprintf("{mode: server, ca_file: %q}", client.CA)); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("QUIC without a client certificate: %v, want a refusal saying a certificate is required", err)
	}
}

// TestAuthz: over mutual TLS, authz rules decide by the caller's verified
// identity, for the native protocol and gRPC alike; a denied call gets
// PERMISSION_DENIED before its handler runs; a path spelled differently
// from the method's name (a doubled slash, another case) never reaches the
// method; new rules apply to the next call on a connection kept across the
// reload.
func TestAuthz(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	srvTLS := tlsFiles("mutual", tlstest.Write(t, t.TempDir(), ca.PEM, ca.Issue(t, "spiffe://prod/server", tlstest.Opts{})))
	allowWeb := `[{use: authz, options: {rules: [{methods: ["` + mEcho + `"], identities: ["spiffe://prod/web"]}]}}]`
	addr := freePort(t)
	srv := startServer(t, srvConf{Addr: addr, Protocols: "[axon, grpc]", TLS: srvTLS, Intercept: allowWeb})

	native := func(id string) *kernel.BuiltClient {
		cfg := parseConfig(t, "service: cli\nregistry: {use: static}\ntls: "+tlsFiles("mutual", tlstest.Write(t, t.TempDir(), ca.PEM, ca.Issue(t, id, tlstest.Opts{})))+"\n")
		c, err := kernel.BuildClient(srv.cat, cfg, srv.addr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	grpcFor := func(id string) *grpc.ClientConn {
		leaf := ca.Issue(t, id, tlstest.Opts{})
		conf := &tls.Config{RootCAs: tlstest.Pool(ca), ServerName: "localhost", Certificates: []tls.Certificate{leaf.TLS}}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	code := func(err error) string {
		if err == nil {
			return "OK"
		}
		if se := kstatus.FromError(err); se != nil && se.Code() != kstatus.Unknown {
			return se.Code().String() // the native client's
		}
		if s, ok := status.FromError(err); ok {
			return s.Code().String() // grpc-go's
		}
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	web, batch := native("spiffe://prod/web"), native("spiffe://prod/batch")
	gWeb, gBatch := grpcFor("spiffe://prod/web"), grpcFor("spiffe://prod/batch")
	gInvoke := func(cc *grpc.ClientConn, method string) error {
		return cc.Invoke(ctx, method, &echopb.SayRequest{Text: "hi"}, new(echopb.SayResponse))
	}
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"axon, allowed identity", func() error { _, err := say(ctx, web, mEcho, "hi"); return err }, "OK"},
		{"axon, other identity", func() error { _, err := say(ctx, batch, mEcho, "hi"); return err }, "PERMISSION_DENIED"},
		{"axon, allowed identity, method not in the rule", func() error { _, err := say(ctx, web, mFail, "0 ok"); return err }, "PERMISSION_DENIED"},
		{"grpc-go, allowed identity", func() error { return gInvoke(gWeb, mEcho) }, "OK"},
		{"grpc-go, other identity", func() error { return gInvoke(gBatch, mEcho) }, "PermissionDenied"},
		{"grpc-go, doubled slash", func() error { return gInvoke(gBatch, "/"+mEcho) }, "Unimplemented"},
		{"grpc-go, other case", func() error { return gInvoke(gBatch, strings.ToUpper(mEcho)) }, "Unimplemented"},
	} {
		if got := code(tc.call()); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}

	// New rules: batch may call, web may not; the connections stay.
	allowBatch := strings.ReplaceAll(allowWeb, "spiffe://prod/web", "spiffe://prod/batch")
	if err := srv.apply(srvConf{Addr: addr, Protocols: "[axon, grpc]", TLS: srvTLS, Intercept: allowBatch}); err != nil {
		t.Fatal(err)
	}
	if _, err := say(ctx, batch, mEcho, "hi"); err != nil {
		t.Errorf("batch after the reload: %v", err)
	}
	if _, err := say(ctx, web, mEcho, "hi"); code(err) != "PERMISSION_DENIED" {
		t.Errorf("web after the reload: %v, want PERMISSION_DENIED", err)
	}
	if err := gInvoke(gBatch, mEcho); err != nil {
		t.Errorf("grpc-go batch after the reload: %v", err)
	}
}

// TestPlaintextRefused: plaintext clients of a TLS listener are told, in
// their own protocol, that it requires TLS: an HTTP/1 request gets 400
// with a message, an HTTP/2 client GOAWAY INADEQUATE_SECURITY; none hangs.
func TestPlaintextRefused(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	srv := startServer(t, srvConf{Protocols: "[axon, grpc]", TLS: tlsFiles("mutual", tlstest.Write(t, t.TempDir(), ca.PEM, ca.Issue(t, "spiffe://test/server", tlstest.Opts{})))})
	addr := hostPort(srv.addr())

	resp, err := http.Post("http://"+addr+mEcho, "application/grpc-web+proto", strings.NewReader(""))
	if err != nil {
		t.Fatalf("HTTP/1 POST: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "requires TLS") {
		t.Errorf("HTTP/1 POST: %d %q, want 400 saying TLS is required", resp.StatusCode, body)
	}

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err = cc.Invoke(ctx, mEcho, &echopb.SayRequest{Text: "hi"}, new(echopb.SayResponse))
	if s, _ := status.FromError(err); err == nil || s.Code() != codes.Unavailable {
		t.Errorf("grpc-go over h2c: %v, want UNAVAILABLE", err)
	}
	t.Logf("grpc-go over h2c: %v", err)
}
