package native

import "github.com/axonrpc/axon/kernel"

// Match implements kernel.Matcher: a native connection begins with the
// preface's magic. The version byte is not compared, so that a peer of
// another version reaches this protocol and is told why it is refused.
func (p *Protocol) Match(prefix []byte) kernel.Match {
	return kernel.MatchPrefix(prefix, string(preface[:prefaceLen-1]))
}
