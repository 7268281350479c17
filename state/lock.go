package state

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFile is the file in a data dir that the process using it holds locked, with its pid.
const lockFile = "dwell.pid"

// InUseError says another process holds the data dir: two processes on one Pebble directory
// would corrupt it, and Pebble's own lock only says "resource temporarily unavailable".
type InUseError struct {
	Dir string
	PID int // 0 when the file does not say
}

func (e *InUseError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "PID " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data dir %q is in use by %s (another dwell run?); stop it or pass another --data-dir", e.Dir, who)
}

// lockDir takes dir's lock file before Pebble opens the directory, writing this process's pid
// into it; closing the returned file releases the lock. A dir held by another process (or by
// another Store of this one) is an *InUseError.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("state: locking %s: %w", f.Name(), err)
	}
	if held {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:n])))
		f.Close()
		return nil, &InUseError{Dir: dir, PID: pid}
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// CheckDataDir reports an *InUseError when another process holds dir, without taking it: a
// command checks it before it opens listeners, so that the error a user sees for a second
// instance on one data dir is that one. A dir that does not exist yet is free.
func CheckDataDir(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR, 0)
	if err != nil {
		return nil // no lock file: nobody has opened the dir (Open reports real problems)
	}
	defer f.Close() // closing releases a lock taken here
	held, err := tryLock(f)
	if err != nil || !held {
		return nil
	}
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	return &InUseError{Dir: dir, PID: pid}
}
