package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// The pipeline levels start brokers, clients and the live processor: none may outlive a test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
