package state

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestDataDirInUse: a second Store on a data dir in use fails at once, naming the dir and the
// holder's pid, instead of Pebble's "resource temporarily unavailable"; Close releases it.
func TestDataDirInUse(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Dir: dir, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Fatalf("second open: %v; want an *InUseError with pid %d", err, os.Getpid())
	}
	if want := `data dir "` + dir + `" is in use by PID `; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--data-dir") {
		t.Errorf("error %q; want %q and --data-dir", err, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Options{Dir: dir, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}
