package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/savepoint"
	"github.com/dwellhq/dwell/pipeline/topicscan"
)

// newSavepointsCmd is dwell savepoints, whose list lists an application's savepoints
// (pipeline/savepoint).
func newSavepointsCmd(e *cliEnv) *cobra.Command {
	cmd := parentCmd("savepoints", "list the savepoints dwell run writes, per partition")
	list := &cobra.Command{
		Use:   "list --brokers HOST:PORT [--group GROUP] [--application-id ID] [--json]",
		Short: "list an application's savepoints",
		Long: `Lists the savepoints dwell run has written (every --savepoint-interval, per partition), which
dwell reset rewinds a stopped group's state to: one line per savepoint of each partition, by
partition then time.`,
		Args: noArgs,
	}
	fs := list.Flags()
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	var group, app *string
	var asJSON *bool
	inGroup(fs, groupSelect, func() {
		group = fs.String("group", pipeline.DefaultLiveConfig().Group, "the processor's consumer `GROUP` (the application id defaults to it)")
		app = fs.String("application-id", "", "the application `ID` whose savepoints to list (topics <id>.savepoints and <id>.savepoint-data); default the --group")
		asJSON = fs.Bool("json", false, "print one JSON object per savepoint (the descriptor, with expired)")
	})
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		return listSavepoints(cmd.Context(), e, kafka, *brokers, *group, *app, *asJSON)
	}
	cmd.AddCommand(list)
	return cmd
}

func listSavepoints(ctx context.Context, e *cliEnv, kafka *kafkaFlags, brokers, group, app string, asJSON bool) error {
	stdout, stderr := e.stdout, e.stderr
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	id := app
	if id == "" {
		id = group
	}
	if id == "" {
		return usageError{errors.New("savepoints: --group or --application-id is required")}
	}
	_, descriptors, data := pipeline.InternalTopics(id)
	topics := savepoint.Topics{Descriptors: descriptors, Data: data}
	seeds := splitList(brokers)
	if err := checkBrokers(ctx, connectOptions{Brokers: seeds, ClientOpts: kopts}); err != nil {
		return err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, kopts...)...)
	if err != nil {
		return fmt.Errorf("savepoints: %w", err)
	}
	defer cl.Close()
	ds, err := savepoint.List(ctx, kadm.NewClient(cl), seeds, kopts, topics)
	var missing *topicscan.MissingError
	if errors.As(err, &missing) {
		return fmt.Errorf("savepoints: application %q: %s not found; create them with dwell run --create-topics (or check --application-id)",
			id, strings.Join(missing.Topics, " and "))
	}
	if err != nil && len(ds) == 0 {
		return fmt.Errorf("savepoints: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range ds {
			if werr := enc.Encode(d); werr != nil {
				return werr
			}
		}
	} else if werr := savepointTable(stdout, ds); werr != nil {
		return werr
	}
	if err != nil { // a record that is not a descriptor, after the others
		return fmt.Errorf("savepoints: %w", err)
	}
	if len(ds) == 0 {
		fmt.Fprintf(stderr, "no savepoints in %s\n", descriptors)
	}
	return nil
}

// savepointTable prints ds as a table, one line per savepoint.
func savepointTable(w io.Writer, ds []savepoint.Descriptor) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tID\tTIME\tNEXT\tKEYS\tRECORDS\tBYTES\tEXPIRED")
	for _, d := range ds {
		next := make([]string, 0, len(d.Next))
		for _, t := range slices.Sorted(maps.Keys(d.Next)) {
			next = append(next, fmt.Sprintf("%s:%d", t, d.Next[t]))
		}
		expired := "no"
		if d.Expired {
			expired = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", d.Partition, d.ID, d.Time.UTC().Format(time.RFC3339Nano),
			strings.Join(next, ","), d.Keys, d.Records, d.Bytes, expired)
	}
	return tw.Flush()
}
