// Package uds is Axon's Unix domain socket transport: the native protocol
// between processes on one host, such as a service and its sidecar.
package uds

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.uber.org/fx"

	"github.com/axonrpc/axon/kernel"
)

// FileMode is a socket file's permission bits. It decodes from a quoted
// octal string with a leading zero, such as "0600" or "0o660": an unquoted
// YAML number is ambiguous (0600 reads as decimal 384) and is rejected.
type FileMode os.FileMode

// UnmarshalText parses an octal mode such as "0600".
func (m *FileMode) UnmarshalText(b []byte) error {
	s := string(b)
	digits, ok := strings.CutPrefix(s, "0o")
	if !ok {
		digits, ok = strings.CutPrefix(s, "0")
	}
	if !ok || digits == "" {
		return fmt.Errorf("want an octal mode in quotes with a leading zero, such as \"0600\", got %q", s)
	}
	v, err := strconv.ParseUint(digits, 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("want permission bits from \"0000\" to \"0777\", got %q", s)
	}
	*m = FileMode(v)
	return nil
}

// MarshalText formats m as "0600".
func (m FileMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// String formats m as "0600".
func (m FileMode) String() string { return fmt.Sprintf("%#04o", uint32(m)) }

// Config is the transport's options block (under a listener's options).
type Config struct {
	// Mode is the permission of the socket file; connecting needs write
	// permission, so "0600" admits only the server's user and "0660" its
	// group too. Ignored for abstract sockets.
	Mode FileMode `yaml:"mode"`
	// Abstract uses a Linux abstract socket: the address names no file, and
	// any process in the same network namespace may connect (there are no
	// permissions to check).
	Abstract bool `yaml:"abstract"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Mode: 0o600} }

// Factory builds the transport, named "uds".
var Factory = kernel.NewFactory(kernel.KindTransport, "uds", DefaultConfig,
	func(_ kernel.BuildContext, cfg Config) (kernel.Transport, error) { return New(cfg), nil })

// Module contributes the Unix domain socket transport to an Axon
// application.
var Module = fx.Module("transport.uds", kernel.ProvideFactory(Factory))
