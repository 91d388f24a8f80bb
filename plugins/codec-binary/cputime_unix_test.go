//go:build unix

package binary_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time the process has used, in all its threads
// (so the garbage collector's work counts), or 0 where it is unknown.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
