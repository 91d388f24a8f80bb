package native

import "github.com/axonrpc/axon/kernel"

// Match implements kernel.Matcher: a native connection begins with the
// preface's magic. The version byte is not compared, so that a peer of
// another version reaches this protocol and is told why it is refused.
func (p *Protocol) Match(prefix []byte) kernel.Match {
	return kernel.MatchPrefix(prefix, string(preface[:prefaceLen-1]))
}

// ALPNID is the TLS application protocol ID of the native protocol.
const ALPNID = "axon/1"

// ALPN implements kernel.ALPNer.
func (p *Protocol) ALPN() []string { return []string{ALPNID} }
