package rules

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// base is time zero of the scripts: t=1h means 2026-01-01T01:00:00Z.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var hexID = regexp.MustCompile(`([0-9a-f]{8})[0-9a-f]{24}`)

func rel(t *testing.T, s string) int64 {
	t.Helper()
	if s == "0" {
		return base.UnixMilli()
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return base.Add(d).UnixMilli()
}

// relTime writes ms relative to base (1h0m0s), or as RFC 3339 when that is more than a
// Duration holds.
func relTime(ms int64) string {
	if d := ms - base.UnixMilli(); d < -100*365*24*3600_000 || d > 100*365*24*3600_000 {
		return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
	}
	return (time.Duration(ms-base.UnixMilli()) * time.Millisecond).String()
}

// script holds a script's engine and the state of each key.
type script struct {
	cfg    *Config
	reg    *Registry
	eng    *Engine
	states map[string]*ProfileState
	env    Env
	out    Outcome
	ch     Changes
}

func (s *script) state(key string) *ProfileState {
	st := s.states[key]
	if st == nil {
		st = &ProfileState{}
		s.states[key] = st
	}
	return st
}

func printOutcome(b *strings.Builder, o *Outcome) {
	fmt.Fprintf(b, "state: %s", o.State)
	if o.DeadLetter {
		b.WriteString(" dead-letter")
	}
	if o.Reason != "" {
		fmt.Fprintf(b, " (%s)", o.Reason)
	}
	if o.Unregistered {
		b.WriteString(" unregistered")
	}
	if o.Type != nil && o.Type.Queue != "" {
		fmt.Fprintf(b, " queue=%s", o.Type.Queue)
	}
	b.WriteString("\n")
	if o.Detail != "" {
		fmt.Fprintf(b, "detail: %s\n", o.Detail)
	}
	if len(o.Fired) > 0 {
		fmt.Fprintf(b, "fired: %s\n", strings.Join(o.Fired, ", "))
	}
	if len(o.Actions) > 0 {
		b.WriteString("actions:")
		for _, a := range o.Actions {
			fmt.Fprintf(b, " %s/%s", a.Rule, a.Kind)
		}
		b.WriteString("\n")
	}
	for _, e := range o.Errors[min(len(o.Errors), 1):] {
		fmt.Fprintf(b, "also: %s\n", e.Error())
	}
	for _, out := range o.Outputs {
		fmt.Fprintf(b, "%s", out.Kind)
		if out.Topic != "" {
			fmt.Fprintf(b, " topic=%s", out.Topic)
		}
		if out.Queue != "" {
			fmt.Fprintf(b, " queue=%s", out.Queue)
		}
		fmt.Fprintf(b, " key=%s id=%s", out.Key, hexID.ReplaceAllString(out.ID, "$1"))
		if out.Value != nil {
			fmt.Fprintf(b, " %s", hexID.ReplaceAllString(string(out.Value), "$1"))
		}
		b.WriteString("\n")
	}
	for _, op := range o.Timers {
		verb := "schedule"
		if op.Cancel {
			verb = "cancel"
		}
		fmt.Fprintf(b, "timer: %s %s\n", verb, timerString(&op.Timer))
	}
	if o.Stopped {
		b.WriteString("stopped\n")
	}
	if o.StateChanged {
		b.WriteString("state changed\n")
	}
}

func timerString(t *Timer) string {
	s := fmt.Sprintf("%s type=%s at=%s id=%s", t.Name, t.Type, relTime(t.Deadline), hex.EncodeToString(t.ID[:4]))
	if t.Data != nil {
		s += " data=" + string(t.Data)
	}
	return s
}

func printState(b *strings.Builder, st *ProfileState) {
	if st.Empty() {
		b.WriteString("empty\n")
		return
	}
	for _, t := range st.Traits {
		fmt.Fprintf(b, "trait %s=%q\n", t.Name, t.Value)
	}
	if len(st.Tags) > 0 {
		fmt.Fprintf(b, "tags %s\n", strings.Join(st.Tags, ","))
	}
	for _, c := range st.Counters {
		fmt.Fprintf(b, "counter %s=%d\n", c.Name, c.Value)
	}
	for i := range st.Timers {
		fmt.Fprintf(b, "timer %s\n", timerString(&st.Timers[i]))
	}
}

// TestScripts runs the datadriven scripts in testdata/. Commands:
//
//	rules [version=V] [max_nodes=N]      (input: a rules file; prints the order or the error)
//	registry                            (input: a registry file, or nothing to drop it)
//	event type=T [t=REL] [id=ID] [p=PROFILE] [s=SESSION] [src=S] [tags=a,b] [late] [system]
//	      [visit=STARTED_REL,LAST_REL,EVENTS,PAGE_VIEWS] [admitted]
//	      (input: the properties object, if any)
//	admit type=T                        (Engine.Admit; input: the properties object, if any)
//	fire t=REL [p=PROFILE]              (apply the timers due at REL)
//	state [p=PROFILE]                   (print the key's state; checks its encoding round-trips)
//	drain                               (the keys changed since the last drain: Changes)
//
// Times are relative to 2026-01-01T00:00:00Z, as Go durations. Ids of 32 hex digits are
// shortened to their first 8.
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/scripts", func(t *testing.T, path string) {
		s := &script{states: map[string]*ProfileState{}}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			args := map[string]string{}
			for _, a := range d.CmdArgs {
				args[a.Key] = strings.Join(a.Vals, ",")
			}
			var b strings.Builder
			switch d.Cmd {
			case "rules":
				opt := Options{Version: args["version"]}
				if v, ok := args["max_nodes"]; ok {
					n, _ := strconv.Atoi(v)
					opt.MaxConditionNodes = uint(n)
				}
				cfg, err := Load([]byte(d.Input), opt)
				if err != nil {
					return "error: " + err.Error() + "\n"
				}
				s.cfg = cfg
				if cfg.Registry != nil {
					s.reg = cfg.Registry
				}
				if s.eng == nil {
					s.eng = NewEngine(cfg, s.reg)
				} else {
					s.eng.SetConfig(cfg, s.reg)
				}
				fmt.Fprintf(&b, "version %s:", cfg.Version)
				for _, r := range cfg.Rules {
					fmt.Fprintf(&b, " %s", r.Name)
					if !r.Enabled {
						b.WriteString("(disabled)")
					}
				}
				b.WriteString("\n")
				if reg := cfg.Registry; reg != nil {
					fmt.Fprintf(&b, "registry version %s, unregistered %s:", reg.Version, reg.Unregistered)
					for _, ti := range reg.Types() {
						fmt.Fprintf(&b, " %s", ti.Type)
					}
					b.WriteString("\n")
				}
				return b.String()
			case "registry":
				if strings.TrimSpace(d.Input) == "" {
					s.reg = nil
				} else {
					reg, err := LoadRegistry([]byte(d.Input))
					if err != nil {
						return "error: " + err.Error() + "\n"
					}
					s.reg = reg
					fmt.Fprintf(&b, "version %s, unregistered %s:", reg.Version, reg.Unregistered)
					for _, ti := range reg.Types() {
						fmt.Fprintf(&b, " %s", ti.Type)
					}
					b.WriteString("\n")
				}
				if s.eng != nil {
					s.eng.SetConfig(s.cfg, s.reg)
				}
				return b.String()
			case "event":
				if s.eng == nil {
					t.Fatal("no rules loaded")
				}
				p := args["p"]
				if _, ok := args["p"]; !ok {
					p = "alice"
				}
				ev := EventView{
					ID: args["id"], Type: args["type"], Profile: p, Session: args["s"], Source: args["src"],
					Time: rel(t, cmpOr(args["t"], "0")), Late: d.HasArg("late"), System: d.HasArg("system"),
				}
				if ev.ID == "" {
					ev.ID = "e-" + ev.Type + "-" + cmpOr(args["t"], "0")
				}
				if in := strings.TrimSpace(d.Input); in != "" {
					ev.Properties = []byte(in)
				}
				if v, ok := args["tags"]; ok {
					ev.Tags = []byte(`["` + strings.ReplaceAll(v, ",", `","`) + `"]`)
				}
				s.env.Reset()
				s.env.Event, s.env.Key, s.env.Admitted = ev, p, d.HasArg("admitted")
				if v, ok := args["visit"]; ok {
					f := strings.Split(v, ",")
					n1, _ := strconv.Atoi(f[2])
					n2, _ := strconv.Atoi(f[3])
					s.env.Visit = ActivityView{Open: true, ID: "v1", StartedAt: rel(t, f[0]), LastActivity: rel(t, f[1]),
						EventCount: int64(n1), PageViewCount: int64(n2), EntryURL: "https://shop.example.com/"}
				}
				s.eng.Apply(&s.env, s.state(p), &s.out)
				if s.out.StateChanged {
					s.ch.Note(p, s.state(p))
				}
				printOutcome(&b, &s.out)
				return b.String()
			case "fire":
				p := cmpOr(args["p"], "alice")
				st := s.state(p)
				due := st.PopDue(rel(t, args["t"]), nil)
				if len(due) == 0 {
					return "nothing due\n"
				}
				s.ch.Note(p, st)
				for i := range due {
					fmt.Fprintf(&b, "fired %s\n", timerString(&due[i]))
					s.env.SetTimer(p, &due[i])
					s.eng.Apply(&s.env, st, &s.out)
					printOutcome(&b, &s.out)
				}
				return b.String()
			case "admit":
				var props []byte
				if in := strings.TrimSpace(d.Input); in != "" {
					props = []byte(in)
				}
				v := s.eng.Admit(args["type"], props)
				switch {
				case v.Reject:
					fmt.Fprintf(&b, "reject %s: %s\n", v.Reason, v.Detail)
				case v.Ignore:
					b.WriteString("ignore\n")
				case v.Unregistered:
					b.WriteString("admit (unregistered)\n")
				default:
					b.WriteString("admit\n")
				}
				return b.String()
			case "drain":
				s.ch.Drain(func(c Change) {
					fmt.Fprintf(&b, "%s:", c.Key)
					if c.Deleted {
						b.WriteString(" deleted")
					}
					at := func(ms int64) string {
						if ms == 0 {
							return "none"
						}
						return relTime(ms)
					}
					fmt.Fprintf(&b, " deadline=%s persisted=%s", at(c.Deadline), at(c.Persisted))
					if c.State != nil {
						fmt.Fprintf(&b, " (%d bytes)", len(c.State.AppendEncode(nil)))
					}
					b.WriteString("\n")
				})
				if b.Len() == 0 {
					return "no changes\n"
				}
				return b.String()
			case "state":
				st := s.state(cmpOr(args["p"], "alice"))
				enc := st.AppendEncode(nil)
				var back ProfileState
				if err := back.Decode(enc); err != nil {
					t.Fatalf("state does not decode: %v", err)
				}
				if got := back.AppendEncode(nil); string(got) != string(enc) {
					t.Fatalf("state does not round-trip")
				}
				printState(&b, st)
				fmt.Fprintf(&b, "(%d bytes encoded)\n", len(enc))
				return b.String()
			}
			t.Fatalf("unknown command %q", d.Cmd)
			return ""
		})
	})
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// TestOutputsStayValid: outputs are written into the Outcome's buffer, which grows while one
// Apply writes several; each output stays intact until the next Apply with that Outcome, and
// an Apply with another Outcome leaves it alone.
func TestOutputsStayValid(t *testing.T) {
	cfg, err := Load([]byte(`rules:
  - name: many
    on: add-to-cart
    actions:
      - emit: {type: a, topic: t, key: "k-{{.event.properties.sku}}", properties: {sku: "{{.event.properties.sku}}", pad: "`+strings.Repeat("x", 3000)+`"}}
      - notify: {channel: email, to: ["{{.params.who}}@example.com", " "], subject: "cart {{.event.properties.total}}", params: {who: "{{.profile.id}}"}}
      - emit: {type: b, topic: t, properties: {src: "{{.event.source}}"}}
      - set_trait: {name: last, value: "{{.event.properties.name}} {{.event.id}}"}
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := NewEngine(cfg, nil)
	env, st := benchEnv()
	var out1, out2 Outcome
	eng.Apply(env, st, &out1)
	if len(out1.Errors) > 0 || len(out1.Outputs) != 3 {
		t.Fatalf("errors %v, %d outputs", out1.Errors, len(out1.Outputs))
	}
	snap := func(o *Outcome) string {
		var b strings.Builder
		for _, x := range o.Outputs {
			fmt.Fprintf(&b, "%s %s %s %s\n", x.Kind, x.Key, x.ID, x.Value)
		}
		return b.String()
	}
	want := snap(&out1)
	for _, s := range []string{`"id":"` + out1.Outputs[0].ID + `"`, `"pad":"xxx`, `"sku":"shoe-42"`, `"to":["alice@example.com"]`,
		`"subject":"cart 120.5"`, `"params":{"who":"alice"}`, `"properties":{"src":"web"}`} {
		if !strings.Contains(want, s) {
			t.Errorf("outputs lack %s:\n%s", s, want)
		}
	}
	if out1.Outputs[0].Key != "k-shoe-42" {
		t.Errorf("emit key %q", out1.Outputs[0].Key)
	}
	if v, _ := st.Trait("last"); v != "Running shoe e1" {
		t.Errorf("trait last = %q", v)
	}
	env.Event.ID = "e2"
	eng.Apply(env, st, &out2)
	if got := snap(&out1); got != want {
		t.Errorf("an Apply with another Outcome changed the outputs:\n%s\nwant\n%s", got, want)
	}
	if snap(&out2) == want {
		t.Error("a second event derived the same ids")
	}
	// The state keeps no view of an Outcome's buffer.
	for _, o := range []*Outcome{&out1, &out2} {
		b := o.buf[:cap(o.buf)]
		for i := range b {
			b[i] = 'Z'
		}
	}
	if v, _ := st.Trait("last"); v != "Running shoe e2" {
		t.Errorf("trait last = %q after the buffers were reused", v)
	}
}
