package pipeline

import (
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
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
// (rules.JobID), so a replay writes the same bytes. Jobs with for_each are refused when the
// rule set is loaded (ParseRuleSet): they are not implemented yet.

// maxJobFires bounds the fires of one job at one punctuation; the rest fire at the next.
const maxJobFires = 100

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
	if len(jobs) == 0 && len(f.jobLast) == 0 || f.nparts <= 0 {
		return false
	}
	if f.jobLast == nil {
		f.jobLast = map[string]int64{}
	}
	for name := range f.jobLast { // removed by a reload, or moved (the partition count changed)
		if !hasJob(jobs, name) || JobPartition(name, f.nparts) != f.partition {
			delete(f.jobLast, name)
			changed = true
		}
	}
	for _, j := range jobs {
		if j.ForEach != "" || JobPartition(j.Name, f.nparts) != f.partition {
			continue
		}
		last, ok := f.jobLast[j.Name]
		if !ok {
			f.jobLast[j.Name] = now
			changed = true
			continue
		}
		if now <= last {
			continue
		}
		var upTo int64
		f.fires, upTo = j.Due(last, now, f.fires[:0], maxJobFires)
		for _, t := range f.fires {
			f.fireJob(j, t, now)
		}
		if upTo != last {
			f.jobLast[j.Name] = upTo
			changed = true
		}
	}
	return changed
}

func hasJob(jobs []*rules.Job, name string) bool {
	for _, j := range jobs {
		if j.Name == name {
			return true
		}
	}
	return false
}

// fireJob fires j's scheduled time at (Unix ms) at now: its event to the events output, then
// the rules on it, with the job's own keyless state.
func (f *flow) fireJob(j *rules.Job, at, now int64) {
	f.cause = cause{}
	var began time.Time
	if f.clock != nil {
		began = f.clock()
	}
	t, err := f.eng.JobEvent(j, at, "", &f.env, f.jobState())
	f.stats.Jobs++
	f.noteJob(j.Name, err == nil, now-at)
	f.sched = appendJobJSON(f.sched[:0], t.ID, j, at, t.Data)
	f.hdrs = append(f.hdrs[:0], kgo.RecordHeader{Key: "dwell-job", Value: []byte(j.Name)})
	key := []byte(j.Name)
	f.down.Record(f.topics.Events, key, f.sched, f.hdrs)
	o := &operators.Output{Kind: operators.KindTimer, Key: key, Due: at}
	f.firingJob = true
	f.apply(o, &t, began)
	f.firingJob = false
}

// jobState is the throwaway state a keyless job's rules run against.
func (f *flow) jobState() *rules.ProfileState {
	f.scratch.Reset()
	return &f.scratch
}

// noteJob counts a fire of job for the metrics (Live: dwell_job_fires_total and the delay).
func (f *flow) noteJob(job string, ok bool, delayMs int64) {
	if f.onJob != nil {
		f.onJob(job, ok, delayMs)
	}
}

// appendJobJSON appends the event a job emits at its scheduled time at.
func appendJobJSON(dst []byte, id [16]byte, j *rules.Job, at int64, props []byte) []byte {
	v := struct {
		ID         string          `json:"id"`
		Type       string          `json:"type"`
		Time       string          `json:"time"`
		Properties json.RawMessage `json:"properties,omitempty"`
		Job        struct {
			Name      string `json:"name"`
			Scheduled string `json:"scheduled"`
		} `json:"job"`
	}{ID: hex.EncodeToString(id[:]), Type: j.Type, Time: string(operators.AppendTime(nil, at)), Properties: props}
	v.Job.Name, v.Job.Scheduled = j.Name, v.Time
	b, err := json.Marshal(v)
	if err != nil { // props is a JSON object the job's templates wrote, so this does not happen
		v.Properties = nil
		b, _ = json.Marshal(v)
	}
	return append(dst, b...)
}
