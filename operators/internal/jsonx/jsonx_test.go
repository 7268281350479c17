package jsonx_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/dwellhq/dwell/operators/internal/jsonx"
)

func TestEscapers(t *testing.T) {
	for _, c := range []struct{ in, checked, valid string }{
		{"", `""`, `""`},
		{"plain text, longer than a word", `"plain text, longer than a word"`, `"plain text, longer than a word"`},
		{"q\"b\\s/", `"q\"b\\s/"`, `"q\"b\\s/"`},
		{"\n\r\t\x00\x1f\x7f", `"\n\r\t\u0000\u001f` + "\x7f\"", `"\n\r\t\u0000\u001f` + "\x7f\""},
		{"日本語 é \u2028", "\"日本語 é \u2028\"", "\"日本語 é \u2028\""},
		{"bad \xff\xc3 end", "\"bad \ufffd\ufffd end\"", "\"bad \xff\xc3 end\""}, // the UTF8 variants trust their input
	} {
		if got := string(jsonx.AppendQuoted(nil, c.in)); got != c.checked {
			t.Errorf("AppendQuoted(%q) = %s, want %s", c.in, got, c.checked)
		}
		if got := string(jsonx.AppendEscaped([]byte("x"), c.in)); got != "x"+c.checked[1:len(c.checked)-1] {
			t.Errorf("AppendEscaped(%q) = %s", c.in, got)
		}
		if got := string(jsonx.AppendQuotedUTF8(nil, c.in)); got != c.valid {
			t.Errorf("AppendQuotedUTF8(%q) = %s, want %s", c.in, got, c.valid)
		}
		if got := string(jsonx.AppendEscapedUTF8([]byte("x"), c.in)); got != "x"+c.valid[1:len(c.valid)-1] {
			t.Errorf("AppendEscapedUTF8(%q) = %s", c.in, got)
		}
	}
}

// TestEscapeReadsBack: encoding/json reads every escaped string back as the string, with
// U+FFFD for each byte of invalid UTF-8; on valid UTF-8 both escapers agree.
func TestEscapeReadsBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "Z", " ", "~", "\"", "\\", "\n", "\x00", "\x1f", "\x7f", "é", "€", "😀", "\xff", "\xe2\x82", "\x80"}
	for range 20_000 {
		var b []byte
		for range rng.IntN(30) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		s := string(b)
		var want []byte
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			want = utf8.AppendRune(want, r) // RuneError for an invalid byte
			i += n
		}
		var back string
		if err := json.Unmarshal(jsonx.AppendQuoted(nil, s), &back); err != nil || back != string(want) {
			t.Fatalf("AppendQuoted(%q) reads back as %q (%v)", s, back, err)
		}
		if utf8.ValidString(s) && !bytes.Equal(jsonx.AppendQuotedUTF8(nil, s), jsonx.AppendQuoted(nil, s)) {
			t.Fatalf("the escapers differ on valid %q", s)
		}
	}
}

func TestSkipValue(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{`"a\"b" ,`, 6}, {` {"a":[1,{"b":"}"}]} x`, 20}, {`[]`, 2}, {`-1.5e3,`, 6}, {`true}`, 4},
		{``, -1}, {`   `, -1}, {`,`, -1}, {`{"a":1`, -1}, {`"open`, -1}, {`["\"]`, -1},
	} {
		if got := jsonx.SkipValue([]byte(c.in), 0); got != c.want {
			t.Errorf("SkipValue(%q) = %d, want %d", c.in, got, c.want)
		}
	}
	if got := jsonx.SkipWS([]byte(" \t\r\n x"), 0); got != 5 {
		t.Errorf("SkipWS = %d, want 5", got)
	}
}

func TestViews(t *testing.T) {
	b := []byte("abc")
	if s := jsonx.String(b); s != "abc" || jsonx.String(nil) != "" {
		t.Fatalf("String(%q) = %q", b, s)
	}
	b[0] = 'x'
	if s := jsonx.String(b); s != "xbc" {
		t.Fatal("String copied")
	}
	if v := jsonx.Bytes("abc"); string(v) != "abc" || len(jsonx.Bytes("")) != 0 {
		t.Fatalf("Bytes = %q", v)
	}
}

func TestEscapersDoNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 256)
	s := "a \"quoted\"\n line with é and \xff"
	n := testing.AllocsPerRun(100, func() {
		b := jsonx.AppendQuoted(buf[:0], s)
		b = jsonx.AppendQuotedUTF8(b, s)
		_ = jsonx.SkipValue(b, 0)
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// FuzzScan: the scanners stay inside any input and skip exactly a whole valid value; the
// escapers write valid JSON that reads back as the string.
//
//	go test ./operators/internal/jsonx -run '^$' -fuzz '^FuzzScan$' -fuzztime 30s
func FuzzScan(f *testing.F) {
	for _, s := range []string{`{"a": [1, "b\"c", {"d": null}], "e": -0.5}`, `"x\\"`, "\"\xff\x00\"", ` [ ] `, `tru`, `{"a":"日本"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := range len(b) + 1 {
			if j := jsonx.SkipWS(b, i); j < i || j > len(b) {
				t.Fatalf("SkipWS(%q, %d) = %d", b, i, j)
			}
			if j := jsonx.SkipPlain(b, i); j < i || j > len(b) || j < len(b) && !jsonx.Special[b[j]] {
				t.Fatalf("SkipPlain(%q, %d) = %d", b, i, j)
			}
			if j := jsonx.SkipValue(b, i); j != -1 && (j <= i || j > len(b)) {
				t.Fatalf("SkipValue(%q, %d) = %d", b, i, j)
			}
			if i < len(b) && b[i] == '"' {
				if j, _ := jsonx.SkipString(b, i); j != -1 && (j <= i || j > len(b) || b[j-1] != '"') {
					t.Fatalf("SkipString(%q, %d) = %d", b, i, j)
				}
			}
		}
		if json.Valid(b) {
			if got, want := jsonx.SkipValue(b, 0), len(bytes.TrimRight(b, " \t\r\n")); got != want {
				t.Fatalf("SkipValue(%q) = %d, want %d", b, got, want)
			}
		}
		q := jsonx.AppendQuoted(nil, string(b))
		var back string
		if err := json.Unmarshal(q, &back); err != nil || utf8.Valid(b) && back != string(b) {
			t.Fatalf("AppendQuoted(%q) = %s reads back as %q (%v)", b, q, back, err)
		}
	})
}
