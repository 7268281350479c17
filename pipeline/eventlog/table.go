package eventlog

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/dwellhq/dwell/operators"
)

// printTable prints hits as an aligned table, a row each; "-" stands for an empty or unread
// field.
func printTable(w io.Writer, hits []*hit) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tID\tTYPE\tKEY\tAT\tSTATE\tRULES\tACTIONS\tUS\tDETAIL")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, h := range hits {
		e := &h.e
		ts, state := "", ""
		if !h.lacks.Lacks("time") {
			ts = string(operators.AppendTime(nil, e.Time))
		}
		if !h.lacks.Lacks("state") {
			state = e.State.String()
		}
		var fired, actions []string
		var detail string
		if o := e.Outcome; o != nil {
			fired = o.Fired
			for _, a := range o.Actions {
				actions = append(actions, a.Rule+"/"+a.Kind.String())
			}
			detail = string(o.Reason)
			if o.Detail != "" {
				detail = strings.TrimPrefix(detail+": "+o.Detail, ": ")
			}
		}
		us := "-"
		if e.ProcessingMicros > 0 {
			us = strconv.FormatInt(e.ProcessingMicros, 10)
		}
		if e.Unregistered {
			detail = strings.TrimPrefix(detail+"; unregistered", "; ")
		}
		if len(detail) > 80 {
			detail = detail[:77] + "..."
		}
		at := "-"
		if e.Topic != "" {
			at = fmt.Sprintf("%s/%d/%d", e.Topic, e.Partition, e.Offset)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(ts), dash(e.EventID), dash(e.Type),
			dash(tabSafe(e.Key)), tabSafe(at), dash(state),
			dash(strings.Join(fired, ",")), dash(strings.Join(actions, ",")), us, dash(tabSafe(detail)))
	}
	return tw.Flush()
}

// tabSafe keeps a value from breaking the table's columns and lines.
func tabSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
