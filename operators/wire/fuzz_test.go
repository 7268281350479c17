package wire_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/dwellhq/dwell/operators/wire"
)

// FuzzReader: reading any bytes in any order of calls never panics and never reads out of
// range; varints read as encoding/binary reads them (minimal ones only, canonically), and a
// view is exactly the bytes just consumed, aliasing the input.
//
//	go test ./operators/wire -run '^$' -fuzz '^FuzzReader$' -fuzztime 30s
func FuzzReader(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7}, record())
	f.Add([]byte{0x80, 4, 4, 4}, []byte{0x83, 0, 'a', 'b', 'c', 2, 'x'})
	f.Add([]byte{1, 2, 1, 2}, append(bytes.Repeat([]byte{0xff}, 9), 1, 0x80, 0x80, 0))
	f.Add([]byte{5, 6, 7}, []byte{})
	f.Fuzz(func(t *testing.T, ops, b []byte) {
		canonical := len(ops) > 0 && ops[0]&0x80 != 0
		r := wire.NewReader(b)
		if canonical {
			r = wire.NewCanonicalReader(b)
		}
		minimal := func(n int, p []byte) bool { return !canonical || n == 1 || p[n-1] != 0 }
		// view checks that v is the bytes before the reader's position.
		view := func(v []byte) {
			end := len(b) - r.Len()
			if len(v) > end || cap(v) != len(v) || len(v) > 0 && &v[0] != &b[end-len(v)] {
				t.Fatalf("view of %d bytes is not the %d bytes before offset %d", len(v), len(v), end)
			}
		}
		for _, op := range ops {
			off, ok := len(b)-r.Len(), r.Ok()
			switch op & 7 {
			case 0:
				c := r.Byte()
				if ok && off < len(b) && (!r.Ok() || c != b[off]) {
					t.Fatalf("Byte at %d: %d, ok %v", off, c, r.Ok())
				}
			case 1, 6:
				lim := uint64(1)<<(op>>3) - 1
				v := r.UvarintMax(lim)
				want, n := binary.Uvarint(b[off:])
				if good := ok && n > 0 && want <= lim && minimal(n, b[off:]); good != r.Ok() || good && (v != want || r.Len() != len(b)-off-n) {
					t.Fatalf("UvarintMax(%d) at %d: %d, ok %v; want %d (%d bytes), ok %v", lim, off, v, r.Ok(), want, n, good)
				}
			case 2:
				v := r.Varint()
				want, n := binary.Varint(b[off:])
				if good := ok && n > 0 && minimal(n, b[off:]); good != r.Ok() || good && v != want {
					t.Fatalf("Varint at %d: %d, ok %v; want %d, ok %v", off, v, r.Ok(), want, good)
				}
			case 3:
				view(r.Bytes())
			case 4:
				s := r.String()
				if r.Ok() && s != string(b[len(b)-r.Len()-len(s):len(b)-r.Len()]) {
					t.Fatalf("String %q is not the bytes it consumed", s)
				}
			case 5:
				view(r.Span(int(op>>3) - 2))
			case 7:
				view(r.Rest())
			}
			if r.Len() > len(b)-off || !ok && r.Ok() {
				t.Fatalf("the reader went back (%d bytes left of %d) or recovered", r.Len(), len(b)-off)
			}
		}
		if r.Complete() && r.Len() != 0 {
			t.Fatal("complete with bytes left")
		}
	})
}
