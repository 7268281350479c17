//go:build unix

package rules

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time this process has used (all threads, the GC's included),
// which, unlike wall time, does not count the time other processes of a shared machine hold
// the cores; ok is false where it cannot be read.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
