package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestJobScripts runs testdata/jobs: when scheduled jobs are due. Commands:
//
//	load                              (input: a rules file with jobs)
//	next job=NAME from=TIME [n=N]     the next N fire times after TIME (RFC 3339)
//	due job=NAME last=TIME now=TIME [max=N]
//	                                  what fires in (last, now] under the job's catch-up policy
//
// Times print in UTC and in the job's zone.
func TestJobScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/jobs", func(t *testing.T, path string) {
		var cfg *Config
		job := func(d *datadriven.TestData) *Job {
			var name string
			d.ScanArgs(t, "job", &name)
			for _, j := range cfg.Jobs {
				if j.Name == name {
					return j
				}
			}
			t.Fatalf("no job %s", name)
			return nil
		}
		at := func(d *datadriven.TestData, arg string) int64 {
			var s string
			d.ScanArgs(t, arg, &s)
			tm, err := time.Parse(time.RFC3339, s)
			if err != nil {
				t.Fatal(err)
			}
			return tm.UnixMilli()
		}
		show := func(b *strings.Builder, j *Job, ms int64) {
			tm := time.UnixMilli(ms)
			fmt.Fprintf(b, "%s  %s\n", tm.UTC().Format(time.RFC3339), tm.In(j.Location).Format("2006-01-02 15:04 MST Mon"))
		}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			var b strings.Builder
			switch d.Cmd {
			case "load":
				c, err := Load([]byte(d.Input), Options{})
				if err != nil {
					return "error: " + err.Error() + "\n"
				}
				cfg = c
				for _, j := range c.Jobs {
					fmt.Fprintf(&b, "%s: %s, emit %s, catch_up %s", j.Name, j, j.Type, j.CatchUp)
					if j.ForEach != "" {
						fmt.Fprintf(&b, ", for_each %s", j.ForEach)
					}
					b.WriteString("\n")
				}
			case "next":
				j, from, n := job(d), at(d, "from"), 5
				if d.HasArg("n") {
					d.ScanArgs(t, "n", &n)
				}
				for range n {
					next, ok := j.Next(from)
					if !ok {
						b.WriteString("none\n")
						break
					}
					show(&b, j, next)
					from = next
				}
			case "due":
				j, last, now, maxFires := job(d), at(d, "last"), at(d, "now"), 1000
				if d.HasArg("max") {
					d.ScanArgs(t, "max", &maxFires)
				}
				fires, upTo := j.Due(last, now, nil, maxFires)
				for _, f := range fires {
					show(&b, j, f)
				}
				fmt.Fprintf(&b, "%d fires; decided up to %s\n", len(fires), time.UnixMilli(upTo).UTC().Format(time.RFC3339))
			default:
				t.Fatalf("unknown command %s", d.Cmd)
			}
			return b.String()
		})
	})
}

func TestJobIDDeterministic(t *testing.T) {
	a, b := JobID("digest", 1, ""), JobID("digest", 1, "")
	if a != b || a == JobID("digest", 2, "") || a == JobID("digest", 1, "ann") || a == JobID("digest2", 1, "") {
		t.Fatal("job ids must derive from name, time and key only")
	}
}

// BenchmarkJobNext measures one cron Next (the parser's schedule plus dwell's wall-clock
// mapping) and one interval Next.
//
//	go test ./operators/rules -run - -bench JobNext -benchtime 200000x
func BenchmarkJobNext(b *testing.B) {
	cfg, err := Load([]byte(`
jobs:
  - {name: cron, cron: "0 9 * * MON-FRI", timezone: Europe/Warsaw, emit: {type: digest}}
  - {name: every, every: 15m, emit: {type: tick}}
`), Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, j := range cfg.Jobs {
		b.Run("job="+j.Name, func(b *testing.B) {
			b.ReportAllocs()
			t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
			for b.Loop() {
				t, _ = j.Next(t)
			}
		})
	}
}
