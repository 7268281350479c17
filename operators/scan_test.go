package operators

import (
	"math/rand/v2"
	"testing"
)

// TestSkipPlain checks the SWAR scan against the byte table on random strings, with special
// bytes at every lane position.
func TestSkipPlain(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ref := func(b []byte, i int) int {
		for i < len(b) && !strSpecial[b[i]] {
			i++
		}
		return i
	}
	alphabet := []byte("abcXYZ019 {}[]:,!~\x7f\"\\\x00\x1f\x20\x21\x80\xc3\xff")
	for range 200_000 {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			if rng.IntN(4) == 0 {
				b[j] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[j] = byte(0x20 + rng.IntN(0x5f))
			}
		}
		i := 0
		if len(b) > 0 {
			i = rng.IntN(len(b))
		}
		if got, want := skipPlain(b, i), ref(b, i); got != want {
			t.Fatalf("skipPlain(%q, %d) = %d, want %d", b, i, got, want)
		}
	}
}
