package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/axonrpc/axon/interop/conformance"
	v1 "github.com/axonrpc/axon/interop/conformance/internal/gen/conformancev1"
)

const testWait = 30 * time.Second

func request(t *testing.T, req *v1.ServerCompatRequest) io.Reader {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)) // size, then message
}

// startRun runs the command as the conformance runner does with a plaintext
// HTTP/2 gRPC request and returns the address it reports; the server stops
// at the end of the test.
func startRun(t *testing.T) string {
	t.Helper()
	addr, resp := startRunWith(t, &v1.ServerCompatRequest{
		Protocol:            v1.Protocol_PROTOCOL_GRPC,
		HttpVersion:         v1.HTTPVersion_HTTP_VERSION_2,
		MessageReceiveLimit: 200 << 10,
	})
	if len(resp.GetPemCert()) != 0 {
		t.Fatalf("response %v has a certificate; want none without TLS", resp)
	}
	return addr
}

// startRunWith runs the command with req and returns the address and the
// response it reports; the server stops at the end of the test.
func startRunWith(t *testing.T, req *v1.ServerCompatRequest) (string, *v1.ServerCompatResponse) {
	t.Helper()
	outR, outW := io.Pipe()
	stop := make(chan os.Signal, 1)
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(nil, request(t, req), outW, &stderr, stop)
		outW.Close()
	}()
	var n [4]byte
	if _, err := io.ReadFull(outR, n[:]); err != nil {
		t.Fatalf("read response size: %v (stderr: %s)", err, stderr.String())
	}
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	if _, err := io.ReadFull(outR, b); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, outR)
	resp := new(v1.ServerCompatResponse)
	if err := proto.Unmarshal(b, resp); err != nil {
		t.Fatal(err)
	}
	if resp.GetHost() != "127.0.0.1" || resp.GetPort() == 0 {
		t.Fatalf("response %v, want host 127.0.0.1 and a port", resp)
	}
	t.Cleanup(func() {
		stop <- os.Interrupt
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit status %d after stop, want 0 (stderr: %s)", code, stderr.String())
			}
		case <-time.After(testWait):
			t.Error("the server did not stop")
		}
	})
	return net.JoinHostPort(resp.GetHost(), strconv.Itoa(int(resp.GetPort()))), resp
}

// frame is a gRPC length-prefixed message.
func frame(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

// TestServesGRPCAndGRPCWeb calls Unary as a gRPC client (h2c) and as a
// gRPC-Web client (HTTP/1.1) would, on the one address the command reports.
func TestServesGRPCAndGRPCWeb(t *testing.T) {
	addr := startRun(t)
	req := &v1.UnaryRequest{ResponseDefinition: &v1.UnaryResponseDefinition{
		ResponseHeaders: []*v1.Header{{Name: "x-h", Value: []string{"h"}}},
		Response:        &v1.UnaryResponseDefinition_ResponseData{ResponseData: []byte("hi")},
	}}
	body := frame(t, req)
	url := "http://" + addr + "/" + conformance.ServiceName + "/Unary"
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	var h1 http.Protocols
	h1.SetHTTP1(true)
	cases := []struct {
		name        string
		protocols   *http.Protocols
		contentType string
	}{
		{"grpc", &h2, "application/grpc"},
		{"grpc-web over HTTP/1.1", &h1, "application/grpc-web+proto"},
		{"grpc-web over HTTP/2", &h2, "application/grpc-web"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			client := &http.Client{Transport: &http.Transport{Protocols: tc.protocols}}
			defer client.CloseIdleConnections()
			hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			hr.Header.Set("Content-Type", tc.contentType)
			hr.Header.Set("Te", "trailers")
			hr.Header.Set("X-Conformance-Test", "yes")
			res, err := client.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK || res.Header.Get("X-H") != "h" {
				t.Fatalf("status %d, headers %v; want 200 with x-h: h", res.StatusCode, res.Header)
			}
			r := bufio.NewReader(res.Body)
			var prefix [5]byte
			if _, err := io.ReadFull(r, prefix[:]); err != nil {
				t.Fatal(err)
			}
			msg := make([]byte, binary.BigEndian.Uint32(prefix[1:]))
			if _, err := io.ReadFull(r, msg); err != nil {
				t.Fatal(err)
			}
			resp := new(v1.UnaryResponse)
			if err := proto.Unmarshal(msg, resp); err != nil {
				t.Fatal(err)
			}
			if string(resp.GetPayload().GetData()) != "hi" {
				t.Errorf("data %q, want hi", resp.GetPayload().GetData())
			}
			rest, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			st := res.Trailer.Get("Grpc-Status")
			if strings.HasPrefix(tc.contentType, "application/grpc-web") {
				// The trailers are the body's last frame, flagged 0x80.
				if len(rest) < 5 || rest[0] != 0x80 || !bytes.Contains(bytes.ToLower(rest), []byte("grpc-status: 0")) {
					t.Fatalf("trailers frame %q, want flag 0x80 and grpc-status: 0", rest)
				}
				st = "0"
			}
			if st != "0" {
				t.Errorf("grpc-status %q, want 0", st)
			}
		})
	}
}

// TestServesTLS asks for TLS as the runner does, with and without a client
// certificate: the response carries the CA to trust, a gRPC-Web call over
// HTTPS succeeds, and with a client certificate requested a client without
// one is refused in the handshake.
func TestServesTLS(t *testing.T) {
	client, clientPEM := selfSigned(t)
	for _, mutual := range []bool{false, true} {
		t.Run(map[bool]string{false: "server", true: "mutual"}[mutual], func(t *testing.T) {
			req := &v1.ServerCompatRequest{UseTls: true, HttpVersion: v1.HTTPVersion_HTTP_VERSION_1}
			if mutual {
				req.ClientTlsCert = clientPEM
			}
			addr, resp := startRunWith(t, req)
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(resp.GetPemCert()) {
				t.Fatalf("pem_cert %q holds no certificate", resp.GetPemCert())
			}
			call := func(certs []tls.Certificate) error {
				var h1 http.Protocols
				h1.SetHTTP1(true)
				c := &http.Client{Timeout: testWait, Transport: &http.Transport{
					Protocols:       &h1,
					TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs},
				}}
				defer c.CloseIdleConnections()
				body := frame(t, &v1.UnaryRequest{ResponseDefinition: &v1.UnaryResponseDefinition{
					Response: &v1.UnaryResponseDefinition_ResponseData{ResponseData: []byte("hi")},
				}})
				res, err := c.Post("https://"+addr+"/"+conformance.ServiceName+"/Unary", "application/grpc-web+proto", bytes.NewReader(body))
				if err != nil {
					return err
				}
				defer res.Body.Close()
				b, err := io.ReadAll(res.Body)
				if err != nil {
					return err
				}
				if res.StatusCode != http.StatusOK || res.TLS == nil || !bytes.Contains(b, []byte("hi")) {
					t.Fatalf("status %d, TLS %v, body %q; want 200 over TLS with the payload", res.StatusCode, res.TLS != nil, b)
				}
				return nil
			}
			if err := call([]tls.Certificate{client}); err != nil {
				t.Fatalf("call over TLS: %v", err)
			}
			err := call(nil)
			if mutual && err == nil {
				t.Fatal("a client without a certificate was served by a mutual-TLS server")
			}
			if !mutual && err != nil {
				t.Fatalf("call without a client certificate in server mode: %v", err)
			}
		})
	}
}

// selfSigned makes a client certificate as the conformance runner does: a
// self-signed leaf for client authentication, with no SAN.
func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Conformance Client"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestRefusesTruncatedRequest(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(nil, strings.NewReader("\x00\x00\x00\x10abc"), &stdout, &stderr, make(chan os.Signal))
	if code != 1 || stdout.Len() != 0 {
		t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, stdout.String())
	}
}
