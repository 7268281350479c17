// Package wire reads and writes the compact binary records that dwell persists: key and
// partition snapshots (operators), profile state (operators/rules), and key, partition and
// chunk records (state). They are built from single bytes, unsigned and zig-zag varints
// (encoding/binary's encoding), and length-prefixed byte strings: a uvarint length, then the
// bytes. The formats themselves, their versions and their limits belong to the packages that
// write them; this package is the one reader and the one set of append helpers they share.
//
// A Reader reads one record from a byte slice, in the manner of franz-go's kbin.Reader: a read
// that runs past the end, or meets a malformed varint or a value over its limit, marks the
// reader bad, and every later read returns the zero value, so a caller reads a whole record and
// checks Ok or Complete once.
//
// # Invariants
//
//   - No input panics a Reader, and no read looks outside the slice it was given.
//   - Reads do not allocate, except String, which copies. Bytes, Span and Rest return views
//     that alias the input, with their capacity clipped to their length, so appending to a view
//     never overwrites the bytes after it.
//   - Once bad, a Reader stays bad.
//   - A canonical Reader (NewCanonicalReader) also rejects varints that are not minimally
//     encoded, for formats that promise one encoding per value; a plain Reader accepts them, as
//     encoding/binary does.
//   - The append helpers write exactly what the Reader reads back.
package wire
