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
	const want = "010205656d61696c0d61406578616d706c652e636f6d04706c616e0370726f02036e65770376697002097075726368617365" +
		"730607726566756e647301020102030000000000000000000000000004636172740e636172742d6162616e646f6e656480da" +
		"8cf1ee660265310b7b22736b75223a2261227d040000000000000000000000000000000672656d696e640872656d696e6465" +
		"7280a4cfb4ef6602653200"
	st := &ProfileState{
		Traits:   []Trait{{"email", "a@example.com"}, {"plan", "pro"}},
		Tags:     []string{"new", "vip"},
		Counters: []Counter{{"purchases", 3}, {"refunds", -1}},
		Timers: []Timer{
			{ID: [16]byte{1, 2, 3}, Name: "cart", Type: "cart-abandoned", Deadline: 1_767_229_200_000, Cause: "e1", Data: []byte(`{"sku":"a"}`)},
			{ID: [16]byte{4}, Name: "remind", Type: "reminder", Deadline: 1_767_300_000_000, Cause: "e2"},
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
