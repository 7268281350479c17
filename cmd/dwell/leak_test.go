package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The fault suite re-executes this test binary as dwell itself, so that it can SIGKILL a
	// real process.
	if os.Getenv(asDwellEnv) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}
