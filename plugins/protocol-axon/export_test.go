package native

import "time"

// SetWriterIdle sets how long a stream writer goroutine idles before it
// exits, for connections made afterwards, and returns a function that
// restores the previous value.
func SetWriterIdle(d time.Duration) (restore func()) {
	old := writerIdle
	writerIdle = d
	return func() { writerIdle = old }
}

// WriterLoops counts the stream writer goroutines running in the process.
func WriterLoops() int { return writerLoops() }
