package grpc

import (
	"bytes"
	"io"
	"math"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestParseTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"30S", 30 * time.Second, true},
		{"100m", 100 * time.Millisecond, true},
		{"5u", 5 * time.Microsecond, true},
		{"99999999n", 99999999, true},
		{"99999999H", math.MaxInt64, true}, // saturates
		{"0n", 0, true},
		{"", 0, false},
		{"S", 0, false},
		{"100", 0, false},
		{"123456789S", 0, false}, // nine digits
		{"1s", 0, false},
		{"-1S", 0, false},
		{"1.5S", 0, false},
	} {
		got, err := parseTimeout(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestPercentEncode(t *testing.T) {
	for in, want := range map[string]string{
		"plain message":  "plain message",
		"100% sure":      "100%25 sure",
		"naïve\n":        "na%C3%AFve%0A",
		"\x00\x7f\xff ~": "%00%7F%FF ~",
	} {
		if got := percentEncode(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestBase64Reader(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"one chunk", "aGVsbG8=", "hello", true},
		{"padded chunks", "aGk=aGk=YQ==", "hihia", true},
		{"line breaks", "aGVs\r\nbG8=\n", "hello", true},
		{"truncated", "aGVsbG", "", false},
		{"not base64", "a*==", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One byte per read, so quanta straddle reads.
			got, err := io.ReadAll(&base64Reader{r: iotest.OneByteReader(strings.NewReader(tc.in))})
			if (err == nil) != tc.ok || tc.ok && string(got) != tc.want {
				t.Errorf("got %q, %v", got, err)
			}
		})
	}
}

func TestGunzipLimit(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 10000)
	z, err := gzipAppend(nil, big)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		max int
		ok  bool
	}{{10000, true}, {9999, false}, {100, false}} {
		out, err := gunzip(nil, z, tc.max)
		if (err == nil) != tc.ok || tc.ok && !bytes.Equal(out, big) {
			t.Errorf("max %d: %d bytes, %v", tc.max, len(out), err)
		}
		if !tc.ok && cap(out) > 2*tc.max+64 {
			t.Errorf("max %d: grew a %d-byte buffer", tc.max, cap(out))
		}
	}
}
