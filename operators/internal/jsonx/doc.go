// Package jsonx holds the JSON primitives that the decoder and output encoder (operators) and
// the rules (operators/rules) share: the byte classes a string scan stops at, the string
// escaper, the scanners that skip whitespace, strings and values without decoding them, and
// the zero-copy views between bytes and strings that let scanned bytes be compared and kept as
// strings. Each exists once; what a caller builds from them (the validating decoder, the
// canonical output objects, property lookups) stays with the caller.
//
// # Invariants
//
//   - Nothing here panics on any input: scanners take any bytes and any start index within
//     them and report "not found" (-1, or len(b)) rather than read outside the slice.
//   - Nothing allocates: escapers append to the caller's buffer, scanners return indexes.
//   - The escapers write what encoding/json would read back as the same string: '"', '\\'
//     and control bytes escaped (\n, \r, \t, else \u00XX), nothing else. AppendQuoted and
//     AppendEscaped take any string and write U+FFFD for each byte of invalid UTF-8;
//     AppendQuotedUTF8 and AppendEscapedUTF8 take text already known to be valid UTF-8 (what
//     the decoder accepted) and copy its non-ASCII bytes unchecked.
//   - The scanners (SkipWS, SkipString, SkipValue) trust that their input is valid JSON (it was
//     validated by the decoder, or written by dwell) but fail safely on anything else; SkipPlain
//     is the validating decoder's fast path and stops at every byte that needs a closer look.
//     (The decoder keeps its own whitespace step, parser.ws, inlined into its token peek
//     behind a first-byte test: through SkipWS the decoder measured 11-16% slower.)
//   - The hot ones stay small enough to inline (String, Bytes, SkipWS, AppendQuoted,
//     AppendQuotedUTF8); check with go build -gcflags=-m.
//   - A view returned by String or Bytes aliases its argument: the bytes must not change while
//     the view is in use, and a view of a string must never be written.
package jsonx
