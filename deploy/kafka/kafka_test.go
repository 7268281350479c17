package kafka

import "testing"

// TestClusterIDNeverAnOption: the storage tool parses "-t ID"; an id starting with '-' was
// taken for an option and formatting failed.
func TestClusterIDNeverAnOption(t *testing.T) {
	for range 10_000 {
		if id := newClusterID(); id[0] == '-' || len(id) != 22 {
			t.Fatalf("cluster id %q", id)
		}
	}
}
