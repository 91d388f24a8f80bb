package kernel

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// recordServer is a ServerConn that reports the first bytes each connection
// it is given carries.
type recordServer struct{ got chan string }

func (s *recordServer) ServeConn(c net.Conn) {
	defer c.Close()
	b := make([]byte, 64)
	n, _ := io.ReadAtLeast(c, b, 1)
	for n < len(b) {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			break
		}
	}
	s.got <- string(b[:n])
}

func (s *recordServer) Shutdown(context.Context) error { return nil }

type prefixMatcher string

func (m prefixMatcher) Match(p []byte) Match { return MatchPrefix(p, string(m)) }

type http1Matcher struct{}

func (http1Matcher) Match(p []byte) Match { return MatchHTTP1(p) }

func TestSnifferRoutesByFirstBytes(t *testing.T) {
	axon, h2, h1 := &recordServer{make(chan string, 1)}, &recordServer{make(chan string, 1)}, &recordServer{make(chan string, 1)}
	sn := &sniffer{
		matchers: []Matcher{prefixMatcher("\xa7AXON\r\n"), prefixMatcher(HTTP2Preface), http1Matcher{}},
		servers:  []ServerConn{axon, h2, h1},
		timeout:  5 * time.Second,
	}
	tests := []struct {
		name   string
		chunks []string // written one by one, so the sniffer sees partial prefixes
		want   *recordServer
	}{
		{"axon in one write", []string{"\xa7AXON\r\n\x01rest"}, axon},
		{"axon byte by byte", []string{"\xa7", "A", "X", "O", "N", "\r", "\n\x01rest"}, axon},
		{"http2 preface split", []string{"PRI * HTTP/2.0\r\n", "\r\nSM\r\n\r\nframes"}, h2},
		{"http1 post", []string{"POST /a.B/C HTTP/1.1\r\n"}, h1},
		{"http1 options split", []string{"OPT", "IONS / HTTP/1.1\r\n"}, h1},
		{"http1 any method", []string{"DELETE /a.B/C HTTP/1.1\r\n"}, h1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := net.Pipe()
			go sn.ServeConn(s)
			go func() {
				for _, ch := range tt.chunks {
					c.Write([]byte(ch))
					time.Sleep(time.Millisecond)
				}
			}()
			want := ""
			for _, ch := range tt.chunks {
				want += ch
			}
			select {
			case got := <-tt.want.got:
				if got != want {
					t.Fatalf("server got %q, want every byte %q", got, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the connection reached no server (or another one)")
			}
			c.Close()
		})
	}
}

func TestSnifferClosesUnknownAndSilentConnections(t *testing.T) {
	srv := &recordServer{make(chan string, 1)}
	sn := &sniffer{matchers: []Matcher{prefixMatcher("\xa7AXON\r\n"), http1Matcher{}}, servers: []ServerConn{srv, srv}, timeout: 200 * time.Millisecond}
	tests := []struct {
		name  string
		write string
	}{
		{"bad first byte", "\x16\x03\x01"},
		{"bad after a matching start", "\xa7AXQ"},
		{"silent", ""},
		{"too long undecided", "POS"}, // then silent: undecided until the deadline
		{"lower-case method", "post / HTTP/1.1\r\n"},
		{"http2 preface to an http1-only listener", "PRI * HTTP/2.0\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			done := make(chan struct{})
			go func() { sn.ServeConn(s); close(done) }()
			if tt.write != "" {
				c.Write([]byte(tt.write))
			}
			// The sniffer closes its end: a read sees EOF.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("read after %q: %v, want EOF (connection closed)", tt.write, err)
			}
			<-done
			select {
			case got := <-srv.got:
				t.Fatalf("a server was given the connection (%q)", got)
			default:
			}
		})
	}
}

// yesAfter says yes to any prefix of at least n bytes.
type yesAfter int

func (n yesAfter) Match(p []byte) Match {
	if len(p) >= int(n) {
		return MatchYes
	}
	return MatchMore
}

// TestSnifferConfigOrder: a protocol's yes waits while an earlier one in
// the listener's list still says "more".
func TestSnifferConfigOrder(t *testing.T) {
	tests := []struct {
		name  string
		ms    []Matcher
		input string
		want  int
		verd  Match
	}{
		{"earlier undecided holds a later yes", []Matcher{prefixMatcher("ABCD"), yesAfter(1)}, "AB", 0, MatchMore},
		{"earlier yes", []Matcher{prefixMatcher("ABCD"), yesAfter(1)}, "ABCD", 0, MatchYes},
		{"earlier no lets a later yes through", []Matcher{prefixMatcher("ABCD"), yesAfter(1)}, "ABX", 1, MatchYes},
		{"all no", []Matcher{prefixMatcher("ABCD"), prefixMatcher("XY")}, "Q", 0, MatchNo},
	}
	for _, tt := range tests {
		i, v := firstMatch(tt.ms, []byte(tt.input))
		if v != tt.verd || (v != MatchNo && i != tt.want) {
			t.Errorf("%s: firstMatch(%q) = %d, %v; want %d, %v", tt.name, tt.input, i, v, tt.want, tt.verd)
		}
	}
}
