//go:build !unix

package binary_test

import "time"

func cpuTime() time.Duration { return 0 }
