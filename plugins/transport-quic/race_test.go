//go:build race

package quic

// RaceEnabled reports that the race detector is on. quic-go has a known
// data race on its client's 0-RTT path (quic-go/quic-go#4303: the server's
// transport parameters are stored while a stream opened early reads them),
// so 0-RTT tests run only without the race detector.
const RaceEnabled = true
