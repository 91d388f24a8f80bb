package config_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/axonrpc/axon/kernel/config"
)

// The types below mirror a small server configuration (as in configs/dev.yaml).

type TLS struct {
	Mode   string `yaml:"mode" oneof:"off dev mutual"`
	CAFile string `yaml:"ca_file"`
}

// Validate uses a relative FieldError, which Decode prefixes with the path.
func (t *TLS) Validate() error {
	if t.Mode == "mutual" && t.CAFile == "" {
		return config.FieldError("ca_file", `""`, "a CA file when mode is mutual")
	}
	return nil
}

type Listener struct {
	Transport string   `yaml:"transport" required:"true" oneof:"tcp uds quic"`
	Address   string   `yaml:"address" required:"true"`
	Protocols []string `yaml:"protocols" oneof:"axon grpc grpc-web"`
	TLS       *TLS     `yaml:"tls"`
}

type Plugin struct {
	Use     string     `yaml:"use" required:"true"`
	Options config.Raw `yaml:"options"`
}

type Limits struct {
	MaxMessage config.Size `yaml:"max_message" min:"1KiB" max:"1GiB"`
	MaxStreams uint32      `yaml:"max_streams" min:"1"`
}

type Server struct {
	Interceptors []Plugin      `yaml:"interceptors"`
	Limits       Limits        `yaml:"limits"`
	DrainTimeout time.Duration `yaml:"drain_timeout" min:"1ms" max:"1m"`
}

type Client struct {
	ConnsPerEndpoint int             `yaml:"conns_per_endpoint" min:"1" max:"64"`
	Interceptors     []Plugin        `yaml:"interceptors"`
	Timeout          config.Duration `yaml:"timeout"`
}

type Root struct {
	Service  string     `yaml:"service" required:"true"`
	Listen   []Listener `yaml:"listen"`
	Codec    string     `yaml:"codec" oneof:"binary proto json"`
	TLS      TLS        `yaml:"tls"`
	Registry *Plugin    `yaml:"registry"` // optional block
	Client   Client     `yaml:"client"`
	Server   Server     `yaml:"server"`
}

// Validate returns a plain error, which Decode reports at the root.
func (r *Root) Validate() error {
	if r.Codec == "json" && r.Client.ConnsPerEndpoint > 8 {
		return errors.New("the json codec supports at most 8 connections per endpoint")
	}
	return nil
}

func defaultRoot() Root {
	return Root{
		Codec:  "binary",
		TLS:    TLS{Mode: "off"},
		Client: Client{ConnsPerEndpoint: 2, Timeout: config.Duration(5 * time.Second)},
		Server: Server{Limits: Limits{MaxMessage: 4 << 20, MaxStreams: 100}, DrainTimeout: 30 * time.Second},
	}
}

// Plugin configurations, decoded later from a Raw.

type StaticRegistry struct {
	Endpoints map[string][]string `yaml:"endpoints"`
}

type Retry struct {
	MaxAttempts int     `yaml:"max_attempts" min:"1" max:"10"`
	BudgetRatio float64 `yaml:"budget_ratio" min:"0" max:"1"`
}

// Validate returns two joined relative errors.
func (r *Retry) Validate() error {
	var errs []error
	if r.MaxAttempts == 7 {
		errs = append(errs, config.FieldError("max_attempts", "7", "anything but 7"))
	}
	if r.BudgetRatio == 0.5 {
		errs = append(errs, config.FieldError("", "budget_ratio 0.5", "a less round budget"))
	}
	return errors.Join(errs...)
}

// Kinds has a field of every supported kind.
type Kinds struct {
	Inline `yaml:",inline"`

	S     string             `yaml:"s"`
	B     bool               `yaml:"b"`
	I     int                `yaml:"i"`
	I8    int8               `yaml:"i8"`
	I16   int16              `yaml:"i16"`
	I32   int32              `yaml:"i32"`
	I64   int64              `yaml:"i64"`
	U     uint               `yaml:"u"`
	U8    uint8              `yaml:"u8"`
	U16   uint16             `yaml:"u16"`
	U32   uint32             `yaml:"u32"`
	U64   uint64             `yaml:"u64"`
	F32   float32            `yaml:"f32"`
	F64   float64            `yaml:"f64"`
	D     time.Duration      `yaml:"d"`
	CD    config.Duration    `yaml:"cd"`
	Size  config.Size        `yaml:"size"`
	PI    *int               `yaml:"pi"`
	PS    *string            `yaml:"ps"`
	PT    *TLS               `yaml:"pt"`
	LI    []int              `yaml:"li"`
	LS    []string           `yaml:"ls"`
	LT    []TLS              `yaml:"lt"`
	MI    map[string]int     `yaml:"mi"`
	ML    map[string][]int   `yaml:"ml"`
	MT    map[string]TLS     `yaml:"mt"`
	Addr  netip.Addr         `yaml:"addr"`
	PAddr *netip.Addr        `yaml:"paddr"`
	LAddr []netip.Addr       `yaml:"laddr"`
	Raw   config.Raw         `yaml:"raw"`
	Named Mode               `yaml:"named"`
	Nest  struct{ X, Y int } `yaml:"nest"`

	HTTPPort  int    // untagged: http_port
	CAFile    string // untagged: ca_file
	Skipped   int    `yaml:"-"`
	unexposed int
}

type Inline struct {
	Flat string `yaml:"flat"`
}

type Mode string

func TestErrorFormat(t *testing.T) {
	cases := []struct {
		err  *config.Error
		want string
	}{
		{&config.Error{Path: "a.b", Got: `"x"`, Expected: "an integer"}, `config: a.b: expected an integer, got "x"`},
		{&config.Error{Path: "a", Expected: "something"}, `config: a: expected something`},
		{&config.Error{Path: "a", Err: errors.New("boom")}, `config: a: boom`},
		{&config.Error{Err: errors.New("boom")}, `config: boom`},
		{&config.Error{Path: "a", Got: "1", Expected: "a valid x", Err: errors.New("bad")}, `config: a: expected a valid x, got 1: bad`},
		{&config.Error{Path: "a", Got: "1"}, `config: a: invalid value 1`},
		{config.FieldError("x", "1", "2"), `config: x: expected 2, got 1`},
	}
	for _, c := range cases {
		if got := c.err.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
	inner := errors.New("inner")
	if !errors.Is(&config.Error{Err: inner}, inner) {
		t.Error("Unwrap does not return Err")
	}
}

// lines splits a (possibly joined) error into its messages.
func lines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}
