package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/dwellhq/dwell/pipeline/reset"
)

// newResetCmd is dwell reset: it rewinds a stopped application's group offsets and state
// together (pipeline/reset).
func newResetCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reset --group GROUP --to-earliest|--to-datetime TIME [--execute] [flags]",
		Short: "rewind a stopped group: offsets and state together",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var cfg reset.Config
	var inputs, toDatetime *string
	var dryRun *bool
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	inGroup(fs, groupState, func() {
		fs.StringVar(&cfg.Group, "group", "dwell", "the application's consumer `GROUP`")
		fs.StringVar(&cfg.ApplicationID, "application-id", "", "the application `ID` dwell run was given (names the changelog and savepoint topics); default the --group")
		fs.StringVar(&cfg.Changelog, "changelog-topic", "", "the changelog `TOPIC`, if dwell run was given --changelog-topic; default <application-id>.changelog")
		inputs = fs.String("inputs", "", "input `TOPIC,...`; default the topics the group has offsets for")
	})
	inGroup(fs, groupSelect, func() {
		fs.BoolVar(&cfg.ToEarliest, "to-earliest", false, "rewind to the earliest offsets, with empty state: reprocess everything")
		toDatetime = fs.String("to-datetime", "", "rewind to the first records at or after this `TIME` (RFC 3339, or a duration ago: 90m, 2h, 7d), with the state of the newest savepoint at or before it")
		fs.DurationVar(&cfg.ByDuration, "by-duration", 0, "rewind this far back from now (like --to-datetime)")
		fs.StringVar(&cfg.ToOffsets, "to-offsets", "", "rewind to the offsets in this `FILE` (lines topic,partition,offset), with the state of the newest savepoint at or before them; partitions it leaves out are left alone")
	})
	inGroup(fs, groupOther, func() {
		dryRun = fs.Bool("dry-run", false, "print the plan and change nothing (the default without --execute)")
		fs.BoolVar(&cfg.Execute, "execute", false, "carry the plan out: offsets and state move together, in one transaction")
		fs.DurationVar(&cfg.TransactionTimeout, "transaction-timeout", 5*time.Minute, "how long the reset's transaction may take (copying a large savepoint)")
	})
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runReset(cmd.Context(), e.stdout, cfg, kafka, *brokers, *inputs, *toDatetime, *dryRun)
	}
	return cmd
}

func runReset(ctx context.Context, stdout io.Writer, cfg reset.Config, kafka *kafkaFlags, brokers, inputs, toDatetime string, dryRun bool) error {
	if dryRun && cfg.Execute {
		return usageError{errors.New("reset: --dry-run and --execute contradict each other; pass one")}
	}
	var err error
	if cfg.ToDatetime, err = parseWhen(toDatetime, time.Now()); err != nil {
		return usageError{fmt.Errorf("reset: --to-datetime: %w", err)}
	}
	if cfg.ClientOpts, err = kafka.opts(); err != nil {
		return usageError{err}
	}
	cfg.Brokers, cfg.Inputs = splitList(brokers), splitList(inputs)
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if err := checkBrokers(ctx, connectOptions{Brokers: cfg.Brokers, ClientOpts: cfg.ClientOpts}); err != nil {
		return err
	}
	_, err = reset.Run(ctx, cfg, stdout)
	if errors.Is(err, reset.ErrConfig) {
		return usageError{err}
	}
	return err
}
