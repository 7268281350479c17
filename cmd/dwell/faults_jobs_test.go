package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// The scheduled-jobs row (issue 15): live jobs follow the wall clock, so this row runs in real
// time. dwell runs a rules file with two jobs over a stream of a profile per event or so:
//
//   - tick, every: 1s, without for_each: it fires in one partition, which moves with every kill
//     and rebalance; every scheduled second from its first fire to its last must be on the
//     events topic exactly once (read_committed);
//   - sweep, for_each over every profile, added by a reload of the rules file once the whole
//     stream is processed, with an interval equal to its one fire time's Unix seconds (every:
//     aligns to the epoch), so it fires once during the row: once per profile of the stream.
//
// Meanwhile dwell is SIGKILLed while it consumes the stream, scaled 1 -> 3 around the sweep's
// fire, SIGKILLed in the sweep, scaled back to 1 and SIGKILLed once more.
const jobsScenario = "jobs: every 1s + for_each, kills, scale"

// jobsEvents makes about 200k profiles (stormWeb: a new profile per visit of 1.2 events).
const jobsEvents = 240_000

func jobsWeb(events int) bench.WebConfig {
	return bench.WebConfig{Profiles: events, Rate: float64(events) / 7200, VisitEvents: 1.2, NewProfileShare: 1}
}

const jobsRowRules = `version: %s
jobs:
  - name: tick
    every: 1s
    emit: {type: tick}
`

// jobsRowSweep is the for_each job, added by a reload once the stream is processed.
const jobsRowSweep = `  - name: sweep
    every: %ds
    for_each: "true"
    emit: {type: sweep}
`

// jobCounts is what the jobs row checks: the fires expected and read, missing and repeated.
type jobCounts struct {
	want, got, missing, dup int
	problems                []string
}

func (f *faultRun) jobs() string {
	f.t.Helper()
	file := filepath.Join(f.dir, "jobs.yaml")
	write := func(rules string) {
		if err := os.WriteFile(file+".tmp", []byte(rules), 0o644); err != nil {
			f.t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			f.t.Fatal(err)
		}
	}
	write(fmt.Sprintf(jobsRowRules, "ticks-1"))
	f.extraArgs = []string{"--rules", file, "--event-log", "none"}
	began := time.Now()
	at := func() string { return fmt.Sprintf("%.0fs", time.Since(began).Seconds()) }
	var moments []string
	dir := f.newDataDir()
	a := f.start(dir)
	for _, share := range []float64{0.25, 0.6} {
		f.waitProgress(share, a)
		a.kill()
		moments = append(moments, fmt.Sprintf("SIGKILL at %.0f%% (%s)", share*100, at()))
		a = f.start(dir)
	}
	f.waitProgress(1, a)
	moments = append(moments, "stream done "+at())
	// The sweep, added by a reload once every profile is there, fires once: its interval is
	// its fire time's Unix seconds (every: aligns to the epoch), a few seconds from now.
	sweepAt := time.Now().Add(7 * time.Second).Truncate(time.Second)
	write(fmt.Sprintf(jobsRowRules, "sweep-2") + fmt.Sprintf(jobsRowSweep, sweepAt.Unix()))
	f.waitLog(a, "version=sweep-2", 5*time.Second)
	time.Sleep(time.Until(sweepAt.Add(-4 * time.Second)))
	b, c := f.start(f.newDataDir()), f.start(f.newDataDir())
	moments = append(moments, "1 -> 3 at "+at())
	time.Sleep(time.Until(sweepAt.Add(3 * time.Second)))
	a.kill() // in the sweep, or in the rebalance before it
	moments = append(moments, "SIGKILL in the sweep "+at())
	a = f.start(dir)
	time.Sleep(time.Until(sweepAt.Add(10 * time.Second)))
	f.stop(b)
	f.stop(c)
	moments = append(moments, "3 -> 1 at "+at())
	time.Sleep(4 * time.Second)
	f.alive(a)
	a.kill()
	moments = append(moments, "SIGKILL "+at())
	a = f.start(dir)
	// A minute of ticks from the first start; then every tick so far and the whole sweep.
	time.Sleep(time.Until(began.Add(time.Minute)))
	profiles := f.stream.profiles()
	until := time.Now().Add(-time.Second).UnixMilli()
	var jc *jobFires
	deadline := time.Now().Add(time.Minute)
	for {
		f.alive(a)
		jc = f.countJobs(profiles)
		if jc.lastTick >= until && jc.sweeps >= len(profiles) {
			break
		}
		if time.Now().After(deadline) {
			f.keepLogs()
			f.t.Fatalf("within a minute: ticks up to %s (want %s), %d sweep fires of %d profiles (%d missing, %d repeated); %s",
				time.UnixMilli(jc.lastTick).UTC().Format(time.RFC3339), time.UnixMilli(until).UTC().Format(time.RFC3339),
				jc.sweeps, len(profiles), jc.missing, jc.dup, strings.Join(append(moments, jc.problems...), ", "))
		}
		time.Sleep(time.Second)
	}
	f.jobCounts = &jc.jobCounts
	return strings.Join(moments, ", ") + fmt.Sprintf("; %d ticks, sweep over %d profiles", jc.ticks, len(profiles))
}

type jobFires struct {
	jobCounts
	ticks, sweeps int
	lastTick      int64
	unswept       []string // a few profiles the sweep missed
}

// countJobs reads the job fires on the events topic: tick's scheduled seconds must have no gap
// and no repeat between its first fire and its last; sweep must fire once per profile.
func (f *faultRun) countJobs(profiles map[string]bool) *jobFires {
	var jf jobFires
	ticks := map[int64]int{}
	swept := map[string]int{}
	for _, r := range pipelinetest.ReadCommitted(f.t, f.brokers, f.topics.Events) {
		if !bytes.Contains(r.Value, []byte(`"job":{`)) {
			continue
		}
		var ev struct {
			ID, Profile string
			Job         struct{ Name, Scheduled string }
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			f.t.Fatalf("job event %s: %v", r.Value, err)
		}
		switch ev.Job.Name {
		case "tick":
			at, err := time.Parse(time.RFC3339, ev.Job.Scheduled)
			if err != nil {
				f.t.Fatalf("tick %s: %v", r.Value, err)
			}
			ticks[at.UnixMilli()]++
			jf.ticks++
		case "sweep":
			swept[strings.TrimPrefix(ev.Profile, "p:")]++
			jf.sweeps++
		}
	}
	jf.got = jf.ticks + jf.sweeps
	if len(ticks) > 0 {
		times := slices.Sorted(func(yield func(int64) bool) {
			for t := range ticks {
				if !yield(t) {
					return
				}
			}
		})
		first := times[0]
		jf.lastTick = times[len(times)-1]
		for t := first; t <= jf.lastTick; t += 1000 {
			switch n := ticks[t]; {
			case n == 0:
				jf.missing++
			case n > 1:
				jf.dup += n - 1
			}
		}
		if off := slices.IndexFunc(times, func(t int64) bool { return t%1000 != 0 }); off >= 0 {
			jf.problems = append(jf.problems, fmt.Sprintf("tick scheduled off the second: %d", times[off]))
		}
		jf.want = int((jf.lastTick-first)/1000) + 1
	}
	jf.want += len(profiles)
	for p := range profiles {
		switch n := swept[p]; {
		case n == 0:
			jf.missing++
			if len(jf.unswept) < 10 {
				jf.unswept = append(jf.unswept, p)
			}
		case n > 1:
			jf.dup += n - 1
		}
	}
	if len(jf.unswept) > 0 {
		jf.problems = append(jf.problems, fmt.Sprintf("sweep did not fire for %d profiles, such as %q", jf.missing, jf.unswept))
	}
	for p := range swept {
		if strings.HasPrefix(p, "prof-sentinel-") {
			jf.problems = append(jf.problems, fmt.Sprintf("sweep fired for %s, whose event waits in the reorder buffer", p))
			continue
		}
		if !profiles[p] {
			jf.problems = append(jf.problems, fmt.Sprintf("sweep fired for %q, not a profile of the stream", p))
		}
	}
	return &jf
}

// profiles is the set of profile ids of the stream's events, the sentinels left out: each is
// its partition's largest event time, so it waits in the reorder buffer (the watermark trails it
// by --max-out-of-orderness, idle advancement is off) and has no profile the sweep could see.
func (s *stream) profiles() map[string]bool {
	out := map[string]bool{}
	for _, r := range s.recs {
		var e struct{ Profile struct{ ID string } }
		if json.Unmarshal(r.Value, &e) == nil && e.Profile.ID != "" && !s.sentinels["p:"+e.Profile.ID] {
			out[e.Profile.ID] = true
		}
	}
	return out
}
