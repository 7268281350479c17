package state_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/dwellhq/dwell/state"
)

// TestPebbleLogsAtDebug: Pebble's own INFO lines (it writes some on every open and close) go
// out at debug level, tagged component=pebble, so that dwell's default level shows dwell's
// lines only.
func TestPebbleLogsAtDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var buf bytes.Buffer
		dir := t.TempDir()
		for range 2 { // the second open recovers the first one's WAL
			st, err := state.Open(state.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}))})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
		}
		out := buf.String()
		if level == slog.LevelInfo && out != "" {
			t.Errorf("at info level Pebble logged:\n%s", out)
		}
		if level == slog.LevelDebug {
			t.Logf("at debug level:\n%s", out)
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if line != "" && !strings.Contains(line, "component=pebble") {
					t.Errorf("a Pebble line without component=pebble: %q", line)
				}
			}
		}
	}
}
