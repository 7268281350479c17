package rules

import "github.com/dwellhq/dwell/operators/internal/jsonx"

// The names this package's tests knew the JSON primitives by before they moved to
// operators/internal/jsonx.
const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte { return jsonx.AppendQuoted(b, s) }

func skipString(b []byte, i int) (int, bool) { return jsonx.SkipString(b, i) }
