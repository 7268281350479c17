package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWorkflowEndToEnd is issue 13's end-to-end proof, through dwell process --rules
// --registry on dwell gen traffic: an abandoned cart notifies "still browsing" to one queue
// while the visit is open and "abandoned" to another once it has ended (visit.open, as the
// fired schedule sees it at its deadline), and visit-ended is routed by
// event.properties.reason. The abandoned carts' and the inactive visits' queues come from the
// registry (the fired schedule's type and the system event's), no rule fails, and a second
// run writes the same bytes.
func TestWorkflowEndToEnd(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	registry := write("registry.yaml", `version: reg-1
unregistered: accept
types:
  cart-abandoned: {description: a cart left alone for 40 minutes, queue: carts-abandoned}
  visit-ended: {description: a visit ended, queue: visits-inactive}
`)
	rulesFile := write("rules.yaml", `version: carts-1
rules:
  - name: cart-timer
    on: add-to-cart
    actions:
      - schedule: {name: cart, type: cart-abandoned, after: 40m, properties: {sku: "{{.event.properties.sku}}"}}
  - name: cart-bought
    on: purchase
    actions: [{cancel: cart}]
  - name: still-browsing
    on: cart-abandoned
    when: visit.open
    actions:
      - notify: {channel: onsite, queue: carts-browsing, to: ["{{.profile.id}}"], subject: "Still looking at {{.event.properties.sku}}?", params: {open: "{{.visit.open}}", views: "{{.visit.page_view_count}}"}}
  - name: abandoned
    on: cart-abandoned
    when: visit.open == false
    actions:
      - notify: {channel: email, to: ["{{.profile.id}}"], subject: "You left {{.event.properties.sku}}", params: {open: "{{.visit.open}}"}}
  - name: inactive
    on: visit-ended
    when: event.properties.reason == "inactivity"
    actions:
      - notify: {channel: log, to: [growth], subject: "{{.event.properties.reason}} after {{.event.properties.event_count}} events"}
  - name: flushed
    on: visit-ended
    when: event.properties.reason == "shutdown-flush"
    actions: [{route: visits-flushed}]
`)
	in := filepath.Join(dir, "events.jsonl")
	if code, _, stderr := runCLI(t, "", "gen", "--events", "40000", "--rate", "2", "--out", in); code != exitOK {
		t.Fatalf("gen: exit %d: %s", code, stderr)
	}
	run := func(out string) ([]byte, string) {
		code, _, stderr := runCLI(t, "", "process", "--in", in, "--rules", rulesFile, "--registry", registry, "--out", out)
		if code != exitOK {
			t.Fatalf("process: exit %d: %s", code, stderr)
		}
		b, err := os.ReadFile(filepath.Join(out, "rules.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		return b, stderr
	}
	outs, stderr := run(filepath.Join(dir, "out1"))
	if !strings.Contains(stderr, "rule errors=0;") {
		t.Fatalf("rule errors: %s", stderr)
	}
	topics := map[string]int{}
	for _, l := range bytes.Split(bytes.TrimSpace(outs), []byte("\n")) {
		var r struct {
			Topic   string
			Headers map[string]string
			Value   struct {
				Subject    string
				EventType  string `json:"event_type"`
				Type       string
				Params     map[string]string
				Properties struct{ Reason string }
			}
		}
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		topics[r.Topic]++
		switch r.Topic {
		case "dwell.queue.carts-abandoned":
			if r.Value.EventType != "cart-abandoned" || r.Value.Params["open"] != "false" || !strings.HasPrefix(r.Value.Subject, "You left SKU-") {
				t.Fatalf("abandoned: %s", l)
			}
		case "dwell.queue.carts-browsing":
			if r.Value.EventType != "cart-abandoned" || r.Headers["dwell-rule"] != "still-browsing" || r.Value.Params["open"] != "true" {
				t.Fatalf("still browsing: %s", l)
			}
		case "dwell.queue.visits-inactive":
			if r.Value.EventType != "visit-ended" || !strings.HasPrefix(r.Value.Subject, "inactivity after ") {
				t.Fatalf("inactive: %s", l)
			}
		case "dwell.queue.visits-flushed":
			if r.Value.Type != "visit-ended" || r.Value.Properties.Reason != "shutdown-flush" {
				t.Fatalf("flushed: %s", l)
			}
		default:
			t.Fatalf("unexpected topic: %s", l)
		}
	}
	for _, q := range []string{"carts-abandoned", "carts-browsing", "visits-inactive", "visits-flushed"} {
		if topics["dwell.queue."+q] == 0 {
			t.Errorf("nothing on %s: %v", q, topics)
		}
	}
	t.Logf("queues %v; %s", topics, stderr)
	again, _ := run(filepath.Join(dir, "out2"))
	if !bytes.Equal(outs, again) {
		t.Fatal("a second run wrote other rule outputs")
	}
}
