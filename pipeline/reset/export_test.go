package reset

// CrashBeforeCommit makes the reset abandon its transaction open, as a SIGKILL would.
func (c *Config) CrashBeforeCommit() { c.crashBeforeCommit = true }

var ErrCrashed = errCrashed
