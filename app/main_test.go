package app_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// axonBin builds the axon command once for the tests of this package.
func axonBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "axon")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/axonrpc/axon/cmd/axon").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func writeConfig(t *testing.T, path string, port int, extra string) {
	t.Helper()
	cfg := fmt.Sprintf(`service: echo
listen: [{transport: tcp, address: "127.0.0.1:%d"}]
tls: {mode: "off"}
registry: {use: static, options: {endpoints: {echo: ["tcp://127.0.0.1:%d"]}}}
server: {drain_timeout: 5s}
%s`, port, port, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reading test.
type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }
func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, bin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// TestServeAndCall runs the real binary: serve, call (success and failure),
// reload on SIGHUP (a broken file is rejected and the server keeps serving),
// and drain on SIGTERM with exit status 0.
func TestServeAndCall(t *testing.T) {
	bin := axonBin(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "axon.yaml")
	port := freePort(t)
	writeConfig(t, cfg, port, "")

	logs := newSyncBuffer()
	srv := exec.Command(bin, "serve", "--config", cfg, "--watch=false")
	srv.Stderr = logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() { srv.Process.Kill() })
	waitFor(t, "the listening log line", func() bool { return strings.Contains(logs.String(), "msg=listening") })

	calls := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"say", []string{"axon.example.v1.Echo/Say", `{"text":"hi"}`}, 0, `"text": "hi"`, ""},
		{"leading slash", []string{"/axon.example.v1.Echo/Say", `{"text":"x"}`}, 0, `"text": "x"`, ""},
		{"nested, repeated and map fields", []string{"axon.example.v1.Echo/Summarize",
			`{"id":7,"customer":{"address":{"city":"Oslo","country":"NO"}},"items":[{"sku":1,"quantity":2,"price":150}],"tags":{"b":"1","a":"2"}}`},
			0, `"shipTo": "Oslo, NO"`, ""},
		{"status from the handler", []string{"axon.example.v1.Echo/Say", `{}`}, 1, "", "Code: INVALID_ARGUMENT"},
		{"unknown method", []string{"axon.example.v1.Echo/Nope", `{}`}, 2, "", `unknown method "axon.example.v1.Echo/Nope"`},
		{"bad JSON", []string{"axon.example.v1.Echo/Say", `{"txt":1}`}, 2, "", "request JSON"},
		{"server streaming", []string{"axon.example.v1.Echo/Expand", `{"text":"one two"}`}, 0, "{\"text\":\"one\"}\n{\"text\":\"two\"}\n", ""},
		{"server streaming status", []string{"axon.example.v1.Echo/Expand", `{"text":" "}`}, 1, "", "Code: INVALID_ARGUMENT"},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, bin, append([]string{"call", "--config", cfg}, c.args...)...)
			if r.code != c.wantCode || !strings.Contains(r.stdout, c.wantStdout) || !strings.Contains(r.stderr, c.wantStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout containing %q, stderr containing %q",
					r.code, r.stdout, r.stderr, c.wantCode, c.wantStdout, c.wantStderr)
			}
		})
	}

	// A broken file on SIGHUP is rejected; the running generation serves on.
	if err := os.WriteFile(cfg, []byte("service: echo\nlisten: [{transport: tcp, adress: x}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the rejected reload", func() bool { return strings.Contains(logs.String(), "reload rejected") })
	if !strings.Contains(logs.String(), "listen[0].adress: unknown key") {
		t.Errorf("reload error does not name the key path:\n%s", logs.String())
	}
	writeConfig(t, cfg, port, "")
	if r := run(t, bin, "call", "--config", cfg, "axon.example.v1.Echo/Say", `{"text":"still"}`); r.code != 0 {
		t.Fatalf("call after a rejected reload: exit %d: %s", r.code, r.stderr)
	}

	// A good file on SIGHUP becomes generation 2 on the same port.
	writeConfig(t, cfg, port, "log: {level: debug}")
	srv.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(logs.String(), "reloaded generation=2") })
	if r := run(t, bin, "call", "--config", cfg, "axon.example.v1.Echo/Say", `{"text":"again"}`); r.code != 0 {
		t.Fatalf("call after reload: exit %d: %s", r.code, r.stderr)
	}
	// The reload applied its log block: debug lines appear from now on.
	waitFor(t, "a debug line after the reload to log.level debug", func() bool { return strings.Contains(logs.String(), "level=DEBUG") })

	// log.format json applies on reload too.
	writeConfig(t, cfg, port, "log: {level: info, format: json}")
	srv.Process.Signal(syscall.SIGHUP)
	waitFor(t, "a JSON log line after the reload to log.format json", func() bool {
		return strings.Contains(logs.String(), `"msg":"reloaded","generation":3`)
	})

	srv.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM; logs:\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped log line:\n%s", logs.String())
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	bin := axonBin(t)
	cfg := filepath.Join(t.TempDir(), "bad.yaml")
	cases := []struct{ name, yaml, want string }{
		{"unknown key", "service: echo\ntls: {mode: \"off\"}\nserver: {limts: {}}\n", "server.limts: unknown key"},
		{"bad size", "service: echo\ntls: {mode: \"off\"}\nserver: {limits: {max_message: 4 MB}}\n", `server.limits.max_message: expected a size`},
		{"unknown transport", "service: echo\ntls: {mode: \"off\"}\nlisten: [{transport: tcpx, address: \"127.0.0.1:0\"}]\n", `listen[0].transport: kernel: unknown transport plugin "tcpx" (known: quic, tcp, uds)`},
		{"tls not chosen", "service: echo\nlisten: [{address: \"127.0.0.1:0\"}]\n", "tls.mode"},
		{"missing service", "tls: {mode: \"off\"}\n", "service: required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(cfg, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			r := run(t, bin, "serve", "--config", cfg)
			if r.code != 1 || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, c.want)
			}
		})
	}
}

// TestServeWatchesConfig: an editor that writes a temporary file and renames
// it over the config makes the running server apply it; a broken write is
// rejected and the old generation keeps serving.
func TestServeWatchesConfig(t *testing.T) {
	bin := axonBin(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "axon.yaml")
	port := freePort(t)
	writeConfig(t, cfg, port, "")
	logs := newSyncBuffer()
	srv := exec.Command(bin, "serve", "--config", cfg)
	srv.Stderr = logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() })
	waitFor(t, "the listening log line", func() bool { return strings.Contains(logs.String(), "msg=listening") })

	editorWrite := func(content string) {
		tmp := filepath.Join(dir, ".axon.yaml.swp")
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfg); err != nil {
			t.Fatal(err)
		}
	}
	editorWrite("service: echo\nlisten: [{transport: tcp, address: 7}]\ntls: {mode: nope}\n")
	waitFor(t, "the rejected reload", func() bool { return strings.Contains(logs.String(), "reload rejected") })
	good := filepath.Join(dir, "good.yaml")
	writeConfig(t, good, port, "")
	if r := run(t, bin, "call", "--config", good, "axon.example.v1.Echo/Say", `{"text":"still"}`); r.code != 0 {
		t.Fatalf("call after a rejected change: exit %d: %s", r.code, r.stderr)
	}
	content, _ := os.ReadFile(good)
	editorWrite(string(content) + "log: {level: debug}\n")
	waitFor(t, "the applied change", func() bool { return strings.Contains(logs.String(), "reloaded generation=2") })
	if r := run(t, bin, "call", "--config", good, "axon.example.v1.Echo/Say", `{"text":"new"}`); r.code != 0 {
		t.Fatalf("call after the change: exit %d: %s", r.code, r.stderr)
	}
}

// TestCallRejectsStreamingShapes: axon call serves unary and server-streaming
// methods, axon load unary ones; another shape is a usage error that names
// it, reported before anything is dialled.
func TestCallRejectsStreamingShapes(t *testing.T) {
	bin := axonBin(t)
	cfg := filepath.Join(t.TempDir(), "axon.yaml")
	writeConfig(t, cfg, freePort(t), "")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"call client-streaming", []string{"call", "--config", cfg, "axon.example.v1.Echo/Collect", `{"text":"a"}`},
			"axon call: method axon.example.v1.Echo/Collect is client-streaming; axon call supports unary and server-streaming methods"},
		{"call bidirectional", []string{"call", "--config", cfg, "axon.example.v1.Echo/Chat", `{"text":"a"}`},
			"axon call: method axon.example.v1.Echo/Chat is bidirectional-streaming; axon call supports unary and server-streaming methods"},
		{"load server-streaming", []string{"load", "--config", cfg, "axon.example.v1.Echo/Expand", `{"text":"a"}`},
			"axon load: method axon.example.v1.Echo/Expand is server-streaming; axon load supports unary methods"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, bin, c.args...)
			if r.code != 2 || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", r.code, r.stderr, c.want)
			}
		})
	}
}
