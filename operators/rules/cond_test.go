package rules

import (
	"strings"
	"testing"
)

// TestConditionSemantics evaluates conditions against one environment: true, false, or a
// run-time error (a message fragment); and conditions that must not load.
func TestConditionSemantics(t *testing.T) {
	env := &Env{}
	env.Event = EventView{ID: "e1", Type: "add-to-cart", Source: "web", Profile: "alice", Session: "s1", Time: 1000,
		Tags: []byte(`["promo", "mobile"]`),
		Properties: []byte(`{"total": 120.5, "qty": 2, "sku": "shoe-42", "vip": true, "gift": false, "note": null,
			"cart": {"items": [1, 2], "coupon": "SPRING"}, "n": "7"}`)}
	env.Key = "alice"
	env.Visit = ActivityView{Open: true, ID: "v1", StartedAt: 0, LastActivity: 600_000, EventCount: 4, PageViewCount: 2,
		EntryURL: "https://shop.example.com/shoes", ExitURL: "https://shop.example.com/cart"}
	st := &ProfileState{Traits: []Trait{{"plan", "pro"}}, Tags: []string{"vip"}, Counters: []Counter{{"purchases", 3}}}
	for _, c := range []struct {
		src  string
		want string // "true", "false", or an error fragment
	}{
		{`event.type == "add-to-cart"`, "true"},
		{`event.type != "add-to-cart"`, "false"},
		{`event.id == "e1" && event.profile == "alice" && event.session == "s1" && profile.id == "alice"`, "true"},
		{`event.time == 1000 && event.time >= 1000 && event.time <= 1000 && !(event.time < 1000)`, "true"},
		{`not event.late and not event.system`, "true"},
		{`event.properties.total > 100 and event.properties.total < 121`, "true"},
		{`event.properties.total + event.properties.qty == 122.5`, "true"},
		{`event.properties.total * 2 - 1 == 240 && event.properties.qty / 2 == 1 && event.properties.qty % 2 == 0`, "true"},
		{`-event.properties.qty == -2 && +event.properties.qty == 2`, "true"},
		{`event.properties.qty in [1, 2, 3]`, "true"},
		{`event.properties.sku in ["a", "b"]`, "false"},
		{`event.properties.sku not in ["a", "b"]`, "true"},
		{`event.properties.sku startsWith "shoe" && event.properties.sku endsWith "42" && event.properties.sku contains "e-4"`, "true"},
		{`event.properties.sku matches "^shoe-[0-9]+$"`, "true"},
		{`event.properties.sku > "sa" && event.properties.sku <= "shoe-42" && "a" < event.source`, "true"},
		{`event.properties.vip && !event.properties.gift`, "true"},
		{`event.properties.vip == true && event.properties.gift == false`, "true"},
		{`event.properties.note == nil && event.properties.missing == nil && event.properties.sku != nil`, "true"},
		{`event.properties.cart.coupon == "SPRING" && event.properties.cart.items != nil`, "true"},
		{`event.properties.cart.items == event.properties.cart.items`, "false"}, // arrays are never equal
		{`event.properties.total == event.properties.total && event.properties.sku == "shoe-42"`, "true"},
		{`event.properties.missing > 1 || event.properties.missing startsWith "x" || event.properties.missing in ["x"]`, "false"},
		{`event.properties.missing`, "false"},
		{`event.properties.note || event.properties.missing`, "false"},
		{`event.properties.n > 1`, "is a string, not a number"},
		{`event.properties.total startsWith "1"`, "is a number, not a string"},
		{`event.properties.sku`, "is a string, not a boolean"},
		{`event.properties.cart > 1`, "is a object or array, not a number"},
		{`"promo" in event.tags && !("x" in event.tags) && len(event.tags) == 2`, "true"},
		{`"vip" in profile.tags && len(profile.tags) == 1 && profile.traits.plan == "pro" && profile.counters.purchases == 3`, "true"},
		{`profile.traits.unset == "" && profile.counters.unset == 0`, "true"},
		{`visit.open && visit.id == "v1" && visit.duration_ms == 600000 && visit.event_count == 4 && visit.page_view_count == 2`, "true"},
		{`visit.entry_url contains "shoes" && visit.exit_url endsWith "cart" && visit.started_at == 0 && visit.last_activity == 600000`, "true"},
		{`session.open || session.duration_ms > 0`, "false"},
		{`len(event.source) == 3 && len(event.properties.sku) == 7`, "true"},
		{`event.source == event.properties.sku || event.source == event.source`, "true"},
		{`visit.event_count == visit.event_count && event.late == event.system`, "true"},
		{`event.properties.n > 1 || true`, "is a string"}, // errors are not hidden by ||
		{`false && event.properties.n > 1`, "false"},      // short-circuit
	} {
		var paths pathTable
		cond, err := (&compiler{paths: &paths, maxNodes: 200}).compile(c.src)
		if err != nil {
			t.Errorf("%s: does not load: %v", c.src, err)
			continue
		}
		env.ensureSlots(&paths)
		env.resetProps()
		ok, err := cond.eval(&evalCtx{env: env, st: st, budget: defaultLimits.MaxConditionBytes})
		switch {
		case c.want == "true" || c.want == "false":
			if err != nil || (ok != (c.want == "true")) {
				t.Errorf("%s = %v, %v; want %s", c.src, ok, err, c.want)
			}
		case err == nil || !strings.Contains(err.Error(), c.want):
			t.Errorf("%s = %v, %v; want an error with %q", c.src, ok, err, c.want)
		}
	}

	for _, src := range []string{
		`event.type`, `1 + 1`, `event.nope == 1`, `profile.traits == 1`, `profile.traits.a.b == "x"`, `visit.nope > 1`,
		`event.type == 1`, `event.tags == event.tags`, `event.type matches event.source`, `event.type in event.source`,
		`upper(event.type) == "X"`, `event.type + "x" == "y"`, `[1, 2] == [1, 2]`, `event.properties == nil`,
		`event.type in [event.source]`, `event.properties.a in [1, "x"]`, `event.time in ["x"]`, `event.type in [1]`,
		`let x = 1; x == 1`, `event.type == "a" ? true : false`, `-event.type == 1`,
		`!event.time`, `event.type && true`, `event.type < 1`, `event.time contains "x"`, `1 % "x" == 1`,
		`event.type.len() == 1`, `profile.id.x == 1`, `event.properties[event.type] == 1`,
	} {
		var paths pathTable
		if _, err := (&compiler{paths: &paths, maxNodes: 200}).compile(src); err == nil {
			t.Errorf("%s: loaded, want a load error", src)
		}
	}
}

// TestTemplateFuncs renders each documented template function.
func TestTemplateFuncs(t *testing.T) {
	env, st := benchEnv()
	env.Event.Tags = []byte(`["a", "b"]`)
	st.Tags = []string{"new", "vip"}
	eng := NewEngine(nil, nil)
	r := &eng.run
	*r = run{env: env, st: st, out: &Outcome{}, lim: &defaultLimits, rule: "r1", ctx: evalCtx{env: env, st: st}}
	for _, c := range []struct{ src, want string }{
		{`{{.event.properties.missing | default "none"}} {{.event.properties.sku | default "none"}}`, "none shoe-42"},
		{`{{0 | default 5}} {{"" | default "e"}}`, "5 e"},
		{`{{upper .event.type}} {{lower "AbC"}} [{{trim "  x "}}]`, "ADD-TO-CART abc [x]"},
		{`{{truncate 4 .event.properties.name}}|{{truncate 2 "héllo"}}|{{truncate 9 "ab"}}`, "Runn|h|ab"},
		{`{{join "," .profile.tags}} {{join "+" .event.tags}}`, "new,vip a+b"},
		{`{{json .profile.traits}}`, `{"email":"a@example.com","plan":"pro"}`},
		{`{{time .event.time}} {{duration 5400000}}`, "2026-01-01T00:00:00.000Z 1h30m0s"},
		{`{{time .event.properties.total}}`, "1970-01-01T00:00:00.120Z"},
		{`{{time 253402300799999}} {{time -62135596800000}}`, "9999-12-31T23:59:59.999Z 0001-01-01T00:00:00.000Z"},
		{`{{.rule}} {{.visit.event_count}} {{.session.open}}`, "r1 4 false"},
		{`{{range .profile.tags}}<{{.}}>{{end}}`, "<new><vip>"},
	} {
		tp, err := parseTemplate("t", c.src, &defaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		got, err := r.render(tp, nil)
		if err != nil || got != c.want {
			t.Errorf("%s = %q, %v; want %q", c.src, got, err, c.want)
		}
	}
	for _, src := range []string{`{{time "x"}}`, `{{time 253402300800000}}`, `{{time -62135596800001}}`, `{{join "," 3}}`,
		`{{range 2}}{{printf "%40000s" "x"}}{{end}}`} {
		tp, err := parseTemplate("t", src, &defaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := r.render(tp, nil); err == nil {
			t.Errorf("%s = %.40q, want an error", src, got)
		}
	}
}
