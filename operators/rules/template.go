package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"time"
)

// Templates are text/template over this data:
//
//	.event     id, type, time (Unix ms), source, profile, session, late, system, tags (list),
//	           properties (the decoded object)
//	.profile   id, traits (map), tags (list), counters (map)
//	.visit     open, id, started_at, last_activity, duration_ms, event_count, page_view_count,
//	.session   entry_url, exit_url
//	.params    a notify action's parameters, rendered first (in subject, body and recipients)
//	.rule      the rule's name
//
// with this function set (and text/template's own: and, or, not, len, index, print, printf,
// eq, ne, lt, le, gt, ge):
//
//	default FALLBACK X   X, or FALLBACK when X is missing, nil, "" or 0
//	upper S, lower S, trim S
//	truncate N S         the first N bytes of S (at a rune boundary)
//	join SEP LIST        the elements of LIST joined by SEP
//	json X               X as JSON
//	time MS              Unix ms as RFC 3339 in UTC (2026-01-02T15:04:05.000Z)
//	duration MS          milliseconds as a Go duration (1h30m0s)
//
// A missing field renders as nothing; functions given a missing value receive nil (pipe it
// through default first: {{.event.properties.name | default "" | upper}}).

// maxRender bounds the output of one template execution.
const maxRender = 64 << 10

var errRenderTooLarge = errors.New("rendered text over 64 KiB")

func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"default": func(fallback, v any) any {
			switch x := v.(type) {
			case nil:
				return fallback
			case string:
				if x == "" {
					return fallback
				}
			case float64:
				if x == 0 {
					return fallback
				}
			case int64:
				if x == 0 {
					return fallback
				}
			}
			return v
		},
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
		"trim":  strings.TrimSpace,
		"truncate": func(n int, s string) string {
			if n < 0 || len(s) <= n {
				return s
			}
			for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
				n--
			}
			return s[:n]
		},
		"join": func(sep string, v any) (string, error) {
			switch l := v.(type) {
			case []string:
				return strings.Join(l, sep), nil
			case []any:
				parts := make([]string, len(l))
				for i, x := range l {
					parts[i] = fmt.Sprint(x)
				}
				return strings.Join(parts, sep), nil
			case nil:
				return "", nil
			}
			return "", fmt.Errorf("join: %T is not a list", v)
		},
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"time": func(v any) (string, error) {
			ms, err := toInt(v)
			if err != nil {
				return "", fmt.Errorf("time: %w", err)
			}
			return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00"), nil
		},
		"duration": func(v any) (string, error) {
			ms, err := toInt(v)
			if err != nil {
				return "", fmt.Errorf("duration: %w", err)
			}
			return (time.Duration(ms) * time.Millisecond).String(), nil
		},
	}
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int:
		return int64(x), nil
	case float64:
		return int64(x), nil
	}
	return 0, fmt.Errorf("%v is not a number", v)
}

// tmpl is a parsed template; a text without actions is kept as a constant.
type tmpl struct {
	src   string
	t     *template.Template // nil: constant
	props bool               // it mentions properties: decode them for it
}

func parseTemplate(name, src string) (*tmpl, error) {
	if !strings.Contains(src, "{{") {
		return &tmpl{src: src}, nil
	}
	t, err := template.New(name).Funcs(templateFuncs()).Option("missingkey=zero").Parse(src)
	if err != nil {
		return nil, err
	}
	return &tmpl{src: src, t: t, props: strings.Contains(src, "properties")}, nil
}

type limitedBuffer struct {
	bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxRender {
		return 0, errRenderTooLarge
	}
	return b.Buffer.Write(p)
}

// render executes t over the data of r's current event.
func (r *run) render(t *tmpl, params map[string]string) (string, error) {
	if t.t == nil {
		return t.src, nil
	}
	data, err := r.data(t.props, params)
	if err != nil {
		return "", err
	}
	var b limitedBuffer
	if err := t.t.Execute(&b, data); err != nil {
		return "", err
	}
	// A missing map key renders as "<no value>"; like Helm, render it as nothing.
	return strings.ReplaceAll(b.String(), "<no value>", ""), nil
}

// data builds a template's data; the decoded properties are kept for the rest of the event.
func (r *run) data(props bool, params map[string]string) (map[string]any, error) {
	env, st := r.env, r.st
	ev := map[string]any{
		"id": env.Event.ID, "type": env.Event.Type, "time": env.Event.Time, "source": env.Event.Source,
		"profile": env.Event.Profile, "session": env.Event.Session, "late": env.Event.Late, "system": env.Event.System,
	}
	if props {
		if r.props == nil && len(env.Event.Properties) > 0 {
			if err := json.Unmarshal(env.Event.Properties, &r.props); err != nil {
				return nil, fmt.Errorf("event properties: %w", err)
			}
		}
		ev["properties"] = r.props
	}
	if len(env.Event.Tags) > 0 {
		var tags []string
		_ = json.Unmarshal(env.Event.Tags, &tags)
		ev["tags"] = tags
	}
	traits := make(map[string]string, len(st.Traits))
	for _, t := range st.Traits {
		traits[t.Name] = t.Value
	}
	counters := make(map[string]int64, len(st.Counters))
	for _, c := range st.Counters {
		counters[c.Name] = c.Value
	}
	return map[string]any{
		"event":   ev,
		"profile": map[string]any{"id": env.Key, "traits": traits, "tags": st.Tags, "counters": counters},
		"visit":   activityData(&env.Visit),
		"session": activityData(&env.Session),
		"params":  params,
		"rule":    r.rule,
	}, nil
}

func activityData(a *ActivityView) map[string]any {
	var d int64
	if a.Open {
		d = a.LastActivity - a.StartedAt
	}
	return map[string]any{
		"open": a.Open, "id": a.ID, "started_at": a.StartedAt, "last_activity": a.LastActivity, "duration_ms": d,
		"event_count": a.EventCount, "page_view_count": a.PageViewCount, "entry_url": a.EntryURL, "exit_url": a.ExitURL,
	}
}
