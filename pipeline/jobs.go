package pipeline

import (
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/state"
)

// Scheduled jobs (rules.Job) fire in the flow of one partition, exactly once per scheduled
// time:
//
//   - Where: a job fires in the partition JobPartition names from its name and the inputs'
//     partition count, so it follows that partition through rebalances; one instance owns it
//     at a time.
//   - When: at each cycle (live: the cycle's wall-clock time, the injected clock) or after
//     each input line and at the end of input (offline: the partition's watermark, then the
//     largest event time seen, so the output is deterministic), the flow fires what
//     rules.Job.Due says is due since the job's last fired time, at most maxJobFires per job
//     at a time.
//   - The record: the flow keeps each job's last fired time (jobLast), and the live worker
//     writes it in the partition record (state.AppendPartitionRecordJobs), in the same
//     transaction as the fires' outputs; restore reads it back. A cycle that does not commit
//     rebuilds the partition, jobLast with it, so a fire is neither lost nor repeated.
//   - A job seen for the first time (a new job, a reload that added it, a new deployment)
//     starts at the time it is first seen: it does not fire its past. A job removed by a
//     reload loses its record; added again, it starts afresh.
//
// A fired job is written to the events output (keyed by the job's name) and run through the
// rules like a fired schedule, with an id from the job's name and scheduled time
// (rules.JobID), so a replay writes the same bytes.
//
// A job with for_each fires in every partition, once per profile key whose state matches its
// condition (keyed by the profile, its id from the key too, its rules run with the key's
// state). A fire goes over the partition's keys in byte order (sweep): live, at most sweepKeys
// a cycle, from the store (every key as of the last commit) and the keys changed since; the
// fire being swept and the last key reached are part of the job's state in the partition
// record, so a crash resumes after the last committed key. Offline, a fire goes over every key
// at once (memory and the cold store), loading evicted keys back, beyond the key cap.

// maxJobFires bounds the fires of one job at one punctuation; the rest fire at the next.
const maxJobFires = 100

// sweepKeys is how many keys the for_each jobs of a live partition go over in one cycle,
// together: a job over 1M keys takes 500 cycles and stalls none.
const sweepKeys = 2000

// JobPartition is the partition of nparts that fires the job named name: Kafka's partitioner
// on the name, as a record keyed by it would go.
func JobPartition(name string, nparts int32) int32 { return KafkaPartition([]byte(name), nparts) }

// fireJobs fires the jobs of this partition due at now (Unix ms) and reports whether the jobs'
// record changed (it must then be committed with the fires).
func (f *flow) fireJobs(now int64) (changed bool) {
	var jobs []*rules.Job
	if f.rs != nil && f.rs.Rules != nil {
		jobs = f.rs.Rules.Jobs
	}
	if len(jobs) == 0 && len(f.jobState) == 0 || f.nparts <= 0 {
		return false
	}
	if f.jobState == nil {
		f.jobState = map[string]state.JobState{}
	}
	for name := range f.jobState { // removed by a reload, or moved (the partition count changed)
		if j := findJob(jobs, name); j == nil || j.ForEach == "" && JobPartition(name, f.nparts) != f.partition {
			delete(f.jobState, name)
			changed = true
		}
	}
	budget := f.sweepKeys
	for _, j := range jobs {
		if j.ForEach == "" && JobPartition(j.Name, f.nparts) != f.partition {
			continue
		}
		js, ok := f.jobState[j.Name]
		if !ok {
			f.jobState[j.Name] = state.JobState{Last: now}
			changed = true
			continue
		}
		if j.ForEach != "" {
			if f.sweep(j, &js, now, &budget) {
				f.jobState[j.Name] = js
				changed = true
			}
			continue
		}
		if now <= js.Last {
			continue
		}
		var upTo int64
		f.fires, upTo = j.Due(js.Last, now, f.fires[:0], maxJobFires)
		for _, t := range f.fires {
			f.fireJob(j, t, now, nil)
		}
		if upTo != js.Last {
			f.jobState[j.Name] = state.JobState{Last: upTo}
			changed = true
		}
	}
	return changed
}

// fireAllJobs fires every job due at now, each fire over every key (offline, where nothing
// waits on a cycle's end).
func (f *flow) fireAllJobs(now int64) {
	for f.fireJobs(now) && f.jobErr == nil {
	}
}

// sweep moves the for_each job j on: it starts the fire due next, if any, then goes over the
// partition's keys after js.Cursor, in key order, at most *budget of them (taken from it),
// firing for each profile key that matches j's condition; once past the last key, the fire is
// done. It reports whether js changed. A key is visited once per fire: the cursor is part of
// the partition record, committed with the fires. Keys created while a fire goes on are
// visited when they sort after the cursor (live: once their cycle has committed).
func (f *flow) sweep(j *rules.Job, js *state.JobState, now int64, budget *int) bool {
	changed := false
	if js.Sweep == 0 {
		if now <= js.Last {
			return false
		}
		var upTo int64
		f.fires, upTo = j.Due(js.Last, now, f.fires[:0], 1)
		if len(f.fires) == 0 {
			moved := upTo != js.Last
			js.Last = upTo
			return moved
		}
		js.Sweep, js.Cursor = f.fires[0], ""
		changed = true
	}
	if *budget <= 0 || f.keysAfter == nil {
		return changed
	}
	asked, n, last := *budget, 0, js.Cursor
	// The stored keys after the cursor, and those changed since the last commit, which the
	// store may not hold yet (new keys): together every key of the partition.
	f.keyBuf = f.keyBuf[:0]
	err := f.keysAfter(js.Cursor, asked, func(key []byte) {
		f.keyBuf = append(f.keyBuf, string(key))
	})
	if err != nil {
		f.jobErr = err
		return changed
	}
	stored := len(f.keyBuf)
	f.dirtyBuf = f.s.AppendDirtyKeys(f.dirtyBuf[:0])
	for _, k := range f.dirtyBuf {
		if k > js.Cursor {
			f.keyBuf = append(f.keyBuf, k)
		}
	}
	if len(f.keyBuf) > stored {
		slices.Sort(f.keyBuf)
		f.keyBuf = slices.Compact(f.keyBuf)
		if len(f.keyBuf) > asked {
			f.keyBuf = f.keyBuf[:asked]
		}
	}
	for _, key := range f.keyBuf {
		n++
		last = key
		if key[0] != 'p' {
			continue // profile-less keys have no profile to match
		}
		o := f.s.KeyOutput([]byte(key), js.Sweep)
		if o == nil {
			continue // forgotten
		}
		f.fireJob(j, js.Sweep, now, o)
	}
	*budget -= n
	if n > 0 {
		js.Cursor = last
		changed = true
	}
	if n < asked { // fewer keys than asked: past the last one
		js.Last, js.Sweep, js.Cursor = js.Sweep, 0, ""
		changed = true
	}
	return changed
}

func findJob(jobs []*rules.Job, name string) *rules.Job {
	for _, j := range jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// fireJob fires j's scheduled time at (Unix ms) at now: its event to the events output, then
// the rules on it. o is the key's output for a for_each job, which fires only when the key's
// profile matches j's condition; nil for a job without for_each, whose rules run against a
// throwaway keyless state.
func (f *flow) fireJob(j *rules.Job, at, now int64, o *operators.Output) {
	f.cause = cause{}
	var began time.Time
	if f.clock != nil {
		began = f.clock()
	}
	var st *rules.ProfileState
	key := ""
	if o == nil {
		f.scratch.Reset()
		st = &f.scratch
	} else {
		key = string(o.Key)
		if x, ok := f.s.Ext(o).(*rules.ProfileState); ok && x != nil {
			st = x
		} else {
			f.scratch.Reset()
			st = &f.scratch
		}
	}
	t, err := f.eng.JobEvent(j, at, key, &f.env, st)
	if o != nil {
		if ok, merr := f.eng.Matches(j, &f.env, st); !ok || merr != nil {
			return
		}
		f.env.SetTimerOutput(o, key, &t)
	}
	f.stats.Jobs++
	f.noteJob(j.Name, err == nil, now-at)
	f.sched = appendJobJSON(f.sched[:0], t.ID, j, at, key, t.Data)
	f.hdrs = append(f.hdrs[:0], kgo.RecordHeader{Key: "dwell-job", Value: []byte(j.Name)})
	recKey := []byte(j.Name)
	if o == nil {
		o = &operators.Output{Kind: operators.KindTimer, Key: recKey, Due: at}
		f.jobKeyless = true
	} else {
		recKey = o.Key
	}
	f.down.Record(f.topics.Events, recKey, f.sched, f.hdrs)
	f.firingJob = true
	f.apply(o, &t, began)
	f.firingJob, f.jobKeyless = false, false
}

// noteJob counts a fire of job for the metrics (Live: dwell_job_fires_total and the delay).
func (f *flow) noteJob(job string, ok bool, delayMs int64) {
	if f.onJob != nil {
		f.onJob(job, ok, delayMs)
	}
}

// appendJobJSON appends the event a job emits at its scheduled time at, for key (the profile
// id of a for_each job's key; "" for a job without for_each).
func appendJobJSON(dst []byte, id [16]byte, j *rules.Job, at int64, key string, props []byte) []byte {
	v := struct {
		ID         string          `json:"id"`
		Type       string          `json:"type"`
		Time       string          `json:"time"`
		Profile    string          `json:"profile,omitempty"`
		Properties json.RawMessage `json:"properties,omitempty"`
		Job        struct {
			Name      string `json:"name"`
			Scheduled string `json:"scheduled"`
		} `json:"job"`
	}{ID: hex.EncodeToString(id[:]), Type: j.Type, Time: string(operators.AppendTime(nil, at)), Profile: key, Properties: props}
	v.Job.Name, v.Job.Scheduled = j.Name, v.Time
	b, err := json.Marshal(v)
	if err != nil { // props is a JSON object the job's templates wrote, so this does not happen
		v.Properties = nil
		b, _ = json.Marshal(v)
	}
	return append(dst, b...)
}
