//go:build !unix

package state

import "os"

// tryLock does nothing where flock does not exist: Pebble's own lock still refuses a second
// process, in its words.
func tryLock(*os.File) (bool, error) { return false, nil }
