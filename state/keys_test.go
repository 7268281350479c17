package state_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dwellhq/dwell/operators"
)

// TestKeysAfter: a partition's stored keys, in byte order, a few at a time from a cursor, and
// none of another partition's.
func TestKeysAfter(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer st.Close()
	var want []string
	for p := int32(0); p < 3; p++ {
		b := st.NewBatch(p)
		for i := range 10 {
			k := fmt.Sprintf("pk%02d", i)
			if err := b.PutKey(operators.Change{Key: k}, []byte("snap")); err != nil {
				t.Fatal(err)
			}
			if p == 1 {
				want = append(want, k)
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after := ""
	for {
		n := 0
		if err := st.KeysAfter(1, after, 3, func(k []byte) { got, after, n = append(got, string(k)), string(k), n+1 }); err != nil {
			t.Fatal(err)
		}
		if n < 3 {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("keys of partition 1: %q, want %q", got, want)
	}
}
