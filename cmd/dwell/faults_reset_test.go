package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

const rewindScenario = "rewind: offsets alone refused, reset killed, replay killed"

// rewind runs half the stream, then rewinds the group's offsets alone, as Kafka's
// consumer-group tool does: dwell run must refuse to start, naming dwell reset. It puts the
// offsets back, kills a dwell reset --to-earliest at a random moment, runs it again to the end,
// and replays the stream: killed once, on the data dir of the first run (whose state the reset
// marker drops), then on an empty one (which restores from the truncated changelog). finish
// checks the system events written after the reset (checkReplay).
func (f *faultRun) rewind(rng *rand.Rand) string {
	ctx := context.Background()
	// A changelog that Kafka lets dwell reset truncate, as --create-topics makes it.
	policy, retention := "compact,delete", "-1"
	if _, err := f.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "cleanup.policy", Value: &policy},
		{Name: "retention.ms", Value: &retention}}, f.topics.Changelog); err != nil {
		f.t.Fatal(err)
	}
	dir := f.newDataDir()
	p := f.start(dir)
	f.waitProgress(0.5, p)
	f.stop(p)

	committed, err := f.adm.FetchOffsets(ctx, f.group)
	if err != nil {
		f.t.Fatal(err)
	}
	var zero kadm.Offsets
	committed.Each(func(o kadm.OffsetResponse) { zero.AddOffset(o.Topic, o.Partition, 0, -1) })
	if _, err := f.adm.CommitOffsets(ctx, f.group, zero); err != nil {
		f.t.Fatal(err)
	}
	refused := f.start(dir)
	select {
	case <-refused.done:
	case <-time.After(2 * time.Minute):
		f.t.Fatalf("dwell run did not refuse offsets behind its state within 2 minutes; log %s:\n%s", refused.log, tailFile(refused.log))
	}
	if b, _ := os.ReadFile(refused.log); refused.err == nil || !bytes.Contains(b, []byte("dwell reset")) {
		f.t.Fatalf("dwell run with offsets behind its state: %v, want exit 1 naming dwell reset; log:\n%s", refused.err, tailFile(refused.log))
	}
	if _, err := f.adm.CommitOffsets(ctx, f.group, committed.Offsets()); err != nil {
		f.t.Fatal(err)
	}

	ends, err := f.adm.ListEndOffsets(ctx, f.topics.System)
	if err != nil {
		f.t.Fatal(err)
	}
	f.replayFrom = map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { f.replayFrom[o.Partition] = o.Offset })

	args := []string{"reset", "--brokers", strings.Join(f.brokers, ","), "--group", f.group, "--inputs", f.input,
		"--changelog-topic", f.topics.Changelog, "--to-earliest", "--execute"}
	killAfter := time.Duration(rng.IntN(150)) * time.Millisecond // the reset takes about 100ms here
	killed := f.dwellCmd(args...)
	if err := killed.Start(); err != nil {
		f.t.Fatal(err)
	}
	time.Sleep(killAfter) // a random moment: anywhere in the reset, or after it
	_ = killed.Process.Signal(syscall.SIGKILL)
	_ = killed.Wait()
	outcome := "before its commit"
	if after, err := f.adm.FetchOffsets(ctx, f.group); err == nil {
		rewound := true
		after.Each(func(o kadm.OffsetResponse) { rewound = rewound && o.At == 0 })
		if rewound {
			outcome = "after its commit"
		}
	}
	out, err := f.dwellCmd(args...).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("done")) {
		f.t.Fatalf("dwell reset: %v\n%s", err, out)
	}
	truncated := bytes.Contains(out, []byte("truncated changelog"))

	p = f.start(dir)
	f.waitProgress(0.3, p)
	p.kill()
	f.start(f.newDataDir())
	return fmt.Sprintf("offsets rewound alone at 50%%: refused; reset SIGKILLed at %s (%s), rerun (changelog truncated: %v); replay SIGKILLed at 30%%, then an empty data dir",
		killAfter, outcome, truncated)
}

// checkReplay checks a rewind's output: the system events written after the reset are exactly
// the offline run's, and every one written before it has the same bytes as the replayed event
// of its id (a replay is byte-identical).
func (f *faultRun) checkReplay() verdict {
	// The replay killed last left a transaction open on the system topic, which hides what
	// followed it from read_committed readers until the broker aborts it (after the
	// transaction timeout): wait for that.
	pipelinetest.WaitFor(f.t, "no open transaction on the system topic", time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stable, err1 := f.adm.ListCommittedOffsets(ctx, f.topics.System)
		ends, err2 := f.adm.ListEndOffsets(ctx, f.topics.System)
		if err1 != nil || err2 != nil {
			return false
		}
		open := false
		ends.Each(func(o kadm.ListedOffset) {
			if s, ok := stable.Lookup(o.Topic, o.Partition); !ok || s.Offset < o.Offset {
				open = true
			}
		})
		return !open
	})
	var before, after [][]byte
	for _, r := range pipelinetest.ReadCommitted(f.t, f.brokers, f.topics.System) {
		if r.Offset < f.replayFrom[r.Partition] {
			before = append(before, r.Value)
		} else {
			after = append(after, r.Value)
		}
	}
	v := f.stream.check(f.t, after, false)
	replayed := map[string][]byte{}
	for _, val := range after {
		var id struct{ ID string }
		_ = json.Unmarshal(val, &id)
		replayed[id.ID] = val
	}
	differ := 0
	for _, val := range before {
		var id struct{ ID string }
		_ = json.Unmarshal(val, &id)
		if r, ok := replayed[id.ID]; !ok || !bytes.Equal(r, val) {
			differ++
		}
	}
	if differ > 0 {
		v.problems = append(v.problems, fmt.Sprintf("%d of the %d system events written before the reset are not replayed byte for byte", differ, len(before)))
	}
	if len(v.problems) > 0 || v.missing > 0 {
		f.keepLogs()
	}
	return v
}

// dwellCmd is dwell with args as a child process that dies with the test.
func (f *faultRun) dwellCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asDwellEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}
