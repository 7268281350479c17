package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/rulesrc"
)

// newJobsCmd is dwell jobs: the scheduled jobs of a rule set (a rules file, or the newest
// version in the config topic) and when each fires next.
func newJobsCmd(e *cliEnv) *cobra.Command {
	cmd := parentCmd("jobs", "the scheduled jobs of a rule set and their next fire times")
	list := &cobra.Command{
		Use:   "list (--rules FILE | --brokers ADDRS [--config-topic TOPIC]) [--next N] [--from TIME] [--partitions N]",
		Short: "each job of a rules file, or of the config topic's newest version, with its next fire times",
		Long: `Each job of a rules file, or of the config topic's newest version, with its next fire times.

Live, jobs follow the wall clock; dwell process fires them on event time (the watermark).
With --partitions (the input topic's partition count), the partition that fires each job.`,
		Args: maxArgs(0, ""),
	}
	fs := list.Flags()
	var f jobsFlags
	inGroup(fs, groupRules, func() {
		f.rules = fs.String("rules", "", "rules `FILE`")
		f.next = fs.Int("next", 3, "how many fire times to show (`N`)")
		f.from = fs.String("from", "", "show fire times after `TIME` (RFC 3339; default now)")
		f.partitions = fs.Int("partitions", 0, "the inputs' partition count (`N`), to show the partition that fires each job")
	})
	f.brokers = bindBrokers(fs)
	f.kafka = bindKafka(fs)
	inGroup(fs, groupKafka, func() {
		f.topic = fs.String("config-topic", rulesrc.DefaultTopic, "config `TOPIC` to read the newest rule set from (without --rules)")
	})
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		return runJobsList(cmd.Context(), e.stdout, &f, time.Now())
	}
	cmd.AddCommand(list)
	return cmd
}

type jobsFlags struct {
	rules, from, brokers, topic *string
	next, partitions            *int
	kafka                       *kafkaFlags
}

func runJobsList(ctx context.Context, stdout io.Writer, f *jobsFlags, now time.Time) error {
	if *f.next < 0 || *f.partitions < 0 {
		return usageError{errors.New("jobs list: --next and --partitions must not be negative")}
	}
	if *f.from != "" {
		t, err := time.Parse(time.RFC3339, *f.from)
		if err != nil {
			return usageError{fmt.Errorf("jobs list: --from: %w", err)}
		}
		now = t
	}
	var rs *pipeline.RuleSet
	var err error
	if *f.rules != "" {
		rs, err = pipeline.LoadRuleSet(*f.rules, "", rules.Options{})
		if err != nil {
			return err
		}
	} else {
		kopts, err := f.kafka.opts()
		if err != nil {
			return usageError{err}
		}
		if err := checkBrokers(ctx, connectOptions{Brokers: splitList(*f.brokers), ClientOpts: kopts}); err != nil {
			return fmt.Errorf("jobs list: %w (or name a rules file: --rules FILE)", err)
		}
		t, err := rulesrc.NewTopic(rulesrc.TopicConfig{Brokers: splitList(*f.brokers), Topic: *f.topic, ClientOpts: kopts})
		if err != nil {
			return err
		}
		defer t.Close()
		if rs, err = t.Load(ctx); err != nil {
			return fmt.Errorf("jobs list: %w; name a rules file with --rules FILE, or publish one with dwell config apply", err)
		}
		if rs == nil {
			return fmt.Errorf("jobs list: no rule set in the config topic %s", *f.topic)
		}
	}
	return listJobs(stdout, rs, now, *f.next, int32(*f.partitions))
}

// listJobs prints a table of rs's jobs: name, schedule, what each emits, its catch-up policy,
// its partition (when nparts is known) and its next n fire times after now, in UTC and in the
// job's zone.
func listJobs(w io.Writer, rs *pipeline.RuleSet, now time.Time, n int, nparts int32) error {
	var jobs []*rules.Job
	if rs.Rules != nil {
		jobs = rs.Rules.Jobs
	}
	if len(jobs) == 0 {
		fmt.Fprintf(w, "version %s: no jobs\n", rs.Version)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "JOB\tSCHEDULE\tEMITS\tCATCH_UP")
	if nparts > 0 {
		fmt.Fprint(tw, "\tPARTITION")
	}
	fmt.Fprint(tw, "\tNEXT\n")
	for _, j := range jobs {
		sched := j.String()
		if j.ForEach != "" {
			sched += ", for each " + j.ForEach
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s", j.Name, sched, j.Type, j.CatchUp)
		switch {
		case nparts > 0 && j.ForEach != "":
			fmt.Fprint(tw, "\tall") // every partition, for its own keys
		case nparts > 0:
			fmt.Fprintf(tw, "\t%d", pipeline.JobPartition(j.Name, nparts))
		}
		var next []string
		t := now.UnixMilli()
		for range n {
			var ok bool
			if t, ok = j.Next(t); !ok {
				break
			}
			s := time.UnixMilli(t).UTC().Format(time.RFC3339)
			if j.Location != time.UTC {
				s += " (" + time.UnixMilli(t).In(j.Location).Format("2006-01-02 15:04 MST") + ")"
			}
			next = append(next, s)
		}
		if len(next) == 0 {
			next = []string{"never"}
		}
		fmt.Fprintf(tw, "\t%s\n", strings.Join(next, ", "))
	}
	fmt.Fprintf(tw, "version %s: %d jobs\n", rs.Version, len(jobs))
	return tw.Flush()
}
