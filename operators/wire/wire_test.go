package wire_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/dwellhq/dwell/operators/wire"
)

// record appends one of each kind of field.
func record() []byte {
	b := []byte{7}
	b = binary.AppendUvarint(b, 300)
	b = binary.AppendVarint(b, -5)
	b = binary.AppendVarint(b, math.MinInt64)
	b = binary.AppendUvarint(b, math.MaxUint64)
	b = wire.AppendBytes(b, []byte("view"))
	b = wire.AppendString(b, "copy")
	b = wire.AppendBytes(b, nil)
	return append(b, "rest"...)
}

// skipRecord reads the fields of record, without String (which allocates).
func skipRecord(r *wire.Reader) {
	r.Byte()
	r.Uvarint()
	r.Varint()
	r.Varint()
	r.Uvarint()
	r.Bytes()
	r.Bytes()
	r.Bytes()
}

func TestReadsWhatAppendWrites(t *testing.T) {
	b := record()
	for _, r := range []wire.Reader{wire.NewReader(b), wire.NewCanonicalReader(b)} {
		if c, u, v, w, x := r.Byte(), r.Uvarint(), r.Varint(), r.Varint(), r.UvarintMax(math.MaxUint64); c != 7 || u != 300 || v != -5 || w != math.MinInt64 || x != math.MaxUint64 {
			t.Fatalf("read %d %d %d %d %d", c, u, v, w, x)
		}
		if v, s, e := r.Bytes(), r.String(), r.Bytes(); string(v) != "view" || s != "copy" || len(e) != 0 || !r.Ok() {
			t.Fatalf("read %q %q %q, ok %v", v, s, e, r.Ok())
		}
		if r.Complete() || r.Len() != 4 {
			t.Fatalf("complete with %d bytes left", r.Len())
		}
		if rest := r.Rest(); string(rest) != "rest" || !r.Complete() {
			t.Fatalf("rest %q, complete %v", rest, r.Complete())
		}
	}
}

// TestShortRecordsFail: every cut of a record fails somewhere, and a failed reader reads zeros.
func TestShortRecordsFail(t *testing.T) {
	b := record()
	for i := range len(b) - len("rest") {
		r := wire.NewReader(b[:i])
		skipRecord(&r)
		if r.Ok() {
			t.Fatalf("a record cut to %d bytes reads", i)
		}
		if r.Byte() != 0 || r.Uvarint() != 0 || r.Varint() != 0 || r.Bytes() != nil || r.String() != "" || r.Span(0) != nil || r.Len() != 0 || r.Complete() {
			t.Fatalf("a failed reader (cut at %d) still reads", i)
		}
	}
}

func TestLimitsAndCanonical(t *testing.T) {
	cases := []struct {
		name             string
		b                []byte
		read             func(r *wire.Reader)
		plain, canonical bool // whether each reader accepts it
	}{
		{"uvarint under max", []byte{5}, func(r *wire.Reader) { r.UvarintMax(5) }, true, true},
		{"uvarint over max", []byte{6}, func(r *wire.Reader) { r.UvarintMax(5) }, false, false},
		{"non-minimal uvarint", []byte{0x85, 0}, func(r *wire.Reader) { r.Uvarint() }, true, false},
		{"non-minimal varint", []byte{0x81, 0x80, 0}, func(r *wire.Reader) { r.Varint() }, true, false},
		{"non-minimal length", []byte{0x81, 0, 'x'}, func(r *wire.Reader) { r.Bytes() }, true, false},
		{"zero", []byte{0}, func(r *wire.Reader) { r.Varint() }, true, true},
		{"uvarint overflow", bytes.Repeat([]byte{0xff}, 10), func(r *wire.Reader) { r.Uvarint() }, false, false},
		{"varint overflow", append(bytes.Repeat([]byte{0xff}, 10), 1), func(r *wire.Reader) { r.Varint() }, false, false},
		{"length past the end", []byte{2, 'x'}, func(r *wire.Reader) { r.Bytes() }, false, false},
		{"huge length", binary.AppendUvarint(nil, math.MaxUint64), func(r *wire.Reader) { _ = r.String() }, false, false},
		{"negative span", []byte{1}, func(r *wire.Reader) { r.Span(-1) }, false, false},
	}
	for _, c := range cases {
		for i, r := range []wire.Reader{wire.NewReader(c.b), wire.NewCanonicalReader(c.b)} {
			c.read(&r)
			if want := []bool{c.plain, c.canonical}[i]; r.Complete() != want {
				t.Errorf("%s, canonical %v: complete %v, want %v", c.name, i == 1, r.Complete(), want)
			}
		}
	}
	r := wire.NewReader([]byte{1, 2})
	r.Byte()
	r.Fail()
	if r.Ok() || r.Byte() != 0 {
		t.Error("Fail does not stick")
	}
}

// TestViews: views alias the input, and appending to one leaves the bytes after it alone.
func TestViews(t *testing.T) {
	b := wire.AppendBytes(nil, []byte("ab"))
	b = append(b, "cd"...)
	r := wire.NewReader(b)
	v := r.Bytes()
	if &v[0] != &b[1] || cap(v) != len(v) {
		t.Fatalf("view %q does not alias the input with a clipped capacity", v)
	}
	_ = append(v, 'X')
	if string(b[3:]) != "cd" {
		t.Fatalf("an append to a view overwrote the input: %q", b)
	}
}

func TestReadsDoNotAllocate(t *testing.T) {
	b := record()
	n := testing.AllocsPerRun(100, func() {
		r := wire.NewReader(b)
		skipRecord(&r)
		r.Rest()
		if !r.Complete() {
			t.Fatal("incomplete")
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per record", n)
	}
}
