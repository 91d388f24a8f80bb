//go:build !race

package quic

// RaceEnabled reports that the race detector is on; see race_test.go.
const RaceEnabled = false
