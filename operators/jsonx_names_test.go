package operators

import "github.com/dwellhq/dwell/operators/internal/jsonx"

// The names this package's tests knew the string scan by before it moved to
// operators/internal/jsonx.
var strSpecial = &jsonx.Special

func skipPlain(b []byte, i int) int { return jsonx.SkipPlain(b, i) }
