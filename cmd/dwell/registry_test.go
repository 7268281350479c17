package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testRegistry = `version: r7
unregistered: reject
types:
  purchase:
    description: an order was paid
    queue: orders
    schema: {type: object, required: [total], properties: {total: {type: number}}}
  page view:
    description: a page was shown
  debug:
    enabled: false
`

func TestRegistryCommand(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "registry.yaml")
	if err := os.WriteFile(reg, []byte(testRegistry), 0o644); err != nil {
		t.Fatal(err)
	}

	code, out, errs := runCLI(t, "", "registry", "list", reg)
	if code != exitOK {
		t.Fatalf("list: exit %d: %s", code, errs)
	}
	for _, want := range []string{"TYPE", "page-view", "purchase", "orders", "(3 types, version r7, unregistered types: reject)"} {
		if !strings.Contains(out, want) {
			t.Errorf("list output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, "", "registry", "list", reg, "--json")
	if code != exitOK || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"schema":{"properties"`) {
		t.Fatalf("list --json: exit %d:\n%s", code, out)
	}

	code, out, errs = runCLI(t, "", "registry", "validate", reg)
	if code != exitOK || !strings.Contains(out, "ok: 3 types") {
		t.Fatalf("validate: exit %d: %s %s", code, out, errs)
	}

	events := filepath.Join(dir, "events.jsonl")
	lines := `{"type": "purchase", "time": 1, "properties": {"total": 3}}
{"type": "purchase", "time": 1, "properties": {"total": "3"}}
{"type": "Page View", "time": 1}
{"type": "scroll", "time": 1}
{"type": "debug", "time": 1}
not json
`
	if err := os.WriteFile(events, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, "", "registry", "validate", reg, "--events", events)
	if code != exitFailure {
		t.Fatalf("validate --events: exit %d, want %d: %s", code, exitFailure, errs)
	}
	for _, want := range []string{
		"line 2: purchase: schema-violation: properties/total: got string, want number",
		"line 4: scroll: unregistered-type",
		"6 events: ignored=1 ok=2 schema-violation=1 undecodable=1 unregistered-type=1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate --events output lacks %q:\n%s", want, out)
		}
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("types:\n  purchase:\n    enabled: maybe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCLI(t, "", "registry", "validate", bad)
	if code != exitFailure || !strings.Contains(errs, `line 3, column 14: type "purchase": enabled must be true or false`) {
		t.Fatalf("validate bad file: exit %d: %s", code, errs)
	}

	// A rules file with a registry section: its rules are checked too.
	bundle := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(bundle, []byte("rules:\n  - name: a\n    on: x\n    actions: [{tag: t}]\nregistry:\n  types:\n    x:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI(t, "", "registry", "validate", bundle); code != exitOK || !strings.Contains(out, "ok: 1 types") {
		t.Fatalf("validate a rules file: exit %d: %s %s", code, out, errs)
	}
	if err := os.WriteFile(bundle, []byte("rules:\n  - name: a\n    on: x\n    when: event.nope\n    actions: [{tag: t}]\nregistry:\n  types:\n    x:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "", "registry", "validate", bundle); code != exitFailure || !strings.Contains(errs, `rule "a": when: event has no field nope`) {
		t.Fatalf("validate a bad rules file: exit %d: %s", code, errs)
	}

	for _, args := range [][]string{{"registry"}, {"registry", "explain", reg}, {"registry", "list"}} {
		if code, _, _ := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}
