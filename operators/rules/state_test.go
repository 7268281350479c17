package rules

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"testing"
)

// TestProfileStateFormat pins the bytes of a profile state: they live in key snapshots in the
// store and the changelog, so a change of encoding must be a new version, never new bytes
// under the old one. The encoding is canonical, so a varint with a redundant continuation byte
// does not decode.
func TestProfileStateFormat(t *testing.T) {
	const want = "0102046e616d650c416461204c6f76656c616365037a6970000104626574610203626967808080808040066c6f67696e73d7" +
		"04010000000000000000000000000000000909666f6c6c6f772d7570056e7564676580c0e285e3680465762d37077b226e22" +
		"3a317d"
	st := &ProfileState{
		Traits:   []Trait{{"name", "Ada Lovelace"}, {"zip", ""}},
		Tags:     []string{"beta"},
		Counters: []Counter{{"big", 1 << 40}, {"logins", -300}},
		Timers: []Timer{
			{ID: [16]byte{15: 9}, Name: "follow-up", Type: "nudge", Deadline: 1_800_000_000_000, Cause: "ev-7", Data: []byte(`{"n":1}`)},
		},
	}
	got := st.AppendEncode(nil)
	if hex.EncodeToString(got) != want {
		t.Fatalf("encoding:\n got %x\nwant %s", got, want)
	}
	var back ProfileState
	if err := back.Decode(got); err != nil {
		t.Fatal(err)
	}
	back.persisted = 0
	if !reflect.DeepEqual(&back, st) {
		t.Fatalf("decoded %+v, want %+v", back, *st)
	}
	if err := back.Decode([]byte{1, 0x80, 0, 0, 0, 0}); err == nil {
		t.Error("a non-minimal varint decodes")
	}
	if err := back.Decode(bytes.Clone(got[:len(got)-1])); err == nil {
		t.Error("a truncated state decodes")
	}
}
