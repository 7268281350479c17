package eventlog

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dwellhq/dwell/operators/rules"
)

// TestConfigErrors: a Config that cannot work is refused before anything is read, with an
// error marked ErrConfig that names the flag.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.State = "done" }, "use processed, error"},
		{func(c *Config) { c.Limit = -1 }, "must not be negative"},
		{func(c *Config) { c.Type = "[a" }, "syntax error"},
	} {
		cfg := DefaultConfig()
		tc.change(&cfg)
		_, err := Search(context.Background(), cfg, nil, nil) // no brokers: never reached
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want ErrConfig and %q", cfg, err, tc.want)
		}
	}
}

// TestTolerantRows: an entry with fields that cannot be read shows the others, and a filter on
// a field it lacks does not match it.
func TestTolerantRows(t *testing.T) {
	raw := []byte(`{"event_id":"e5","type":"Add-To-Wishlist","key":"p5","partition":"x","state":"replayed","topic":"in","rules":["r"]}`)
	e, err := rules.ParseLogJSON(raw)
	var lacks *rules.LogFieldsError
	if !errors.As(err, &lacks) {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	for _, c := range []struct {
		change func(*Config)
		want   bool
	}{
		{func(*Config) {}, true},
		{func(c *Config) { c.Type = "add-*" }, false},
		{func(c *Config) { c.Type = "Add-*" }, false}, // normalized: add-*, and the entry's type is as logged
		{func(c *Config) { c.Rule = "r" }, true},
		{func(c *Config) { c.Rule = "s" }, false},
		{func(c *Config) { c.State = "processed" }, false}, // unread: Processed is only its zero value
		{func(c *Config) { c.Profile = "p5"; c.ID = "e5" }, true},
	} {
		cfg := cfg
		c.change(&cfg)
		q, err := cfg.validate()
		if err != nil {
			t.Fatal(err)
		}
		if got := q.matches(&e, lacks); got != c.want {
			t.Errorf("%+v matches: %v, want %v", cfg, got, c.want)
		}
	}
	var out bytes.Buffer
	if err := printTable(&out, []*hit{{e: e, lacks: lacks}}); err != nil {
		t.Fatal(err)
	}
	row := strings.Fields(strings.Split(out.String(), "\n")[1])
	if want := []string{"-", "e5", "Add-To-Wishlist", "p5", "in/0/0", "-", "r", "-", "-", "-"}; strings.Join(row, " ") != strings.Join(want, " ") {
		t.Errorf("row %q, want %q", row, want)
	}
}
