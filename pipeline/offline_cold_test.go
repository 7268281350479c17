package pipeline

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestOfflineTempDir checks that a run whose keys pass the cap makes its store under TempDir
// and removes it, and that a missing TempDir is an error before anything is read.
func TestOfflineTempDir(t *testing.T) {
	dir := t.TempDir()
	var in strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&in, `{"id":"e%d","type":"page-view","profile":"p%d","time":%d}`+"\n", i, i%700, 1_700_000_000_000+int64(i)*1000)
	}
	sum, err := RunOffline(context.Background(), OfflineConfig{MaxCachedKeys: 100, TempDir: dir}, strings.NewReader(in.String()), OfflineOutputs{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Totals.Evicted == 0 || sum.Totals.Loaded == 0 {
		t.Fatalf("evicted %d, loaded %d: the cap was not applied", sum.Totals.Evicted, sum.Totals.Loaded)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("the temporary store was left in %s: %v", dir, left)
	}
	_, err = RunOffline(context.Background(), OfflineConfig{TempDir: dir + "/missing"}, strings.NewReader(in.String()), OfflineOutputs{})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("err %v, want the missing temporary directory", err)
	}
}
