package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
)

// newRegistryCmd is dwell registry: list or validate an event registry file (see
// operators/rules.LoadRegistry). validate exits 0 when the file loads (and, with --events,
// every event passes), 1 otherwise.
func newRegistryCmd(e *cliEnv) *cobra.Command {
	cmd := parentCmd("registry", "list or check an event registry file")
	list := &cobra.Command{
		Use:   "list FILE [--json]",
		Short: "the event types a registry file (or a rules file's registry section) registers",
		Args:  registryArgs,
	}
	asJSON := list.Flags().Bool("json", false, "print JSON lines instead of a table")
	list.RunE = func(_ *cobra.Command, args []string) error {
		return runRegistry(e.stdout, "list", args[0], *asJSON, "")
	}
	validate := &cobra.Command{
		Use:   "validate FILE [--events JSONL]",
		Short: "check a registry file, and with --events each event of a JSON Lines file against it",
		Args:  registryArgs,
	}
	events := validate.Flags().String("events", "", "a JSON Lines `FILE` of events to check against the registry")
	validate.RunE = func(_ *cobra.Command, args []string) error {
		return runRegistry(e.stdout, "validate", args[0], false, *events)
	}
	cmd.AddCommand(list, validate)
	return cmd
}

func registryArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usageError{fmt.Errorf("registry %s: name the registry FILE", cmd.Name())}
	}
	return maxArgs(1, "FILE")(cmd, args)
}

func runRegistry(stdout io.Writer, sub, file string, asJSON bool, events string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	reg, err := loadRegistryFile(data)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if sub == "list" {
		return listRegistry(reg, asJSON, stdout)
	}
	fmt.Fprintf(stdout, "%s: ok: %d types, version %s, unregistered types: %s\n", file, len(reg.Types()), reg.Version, reg.Unregistered)
	if events == "" {
		return nil
	}
	return checkEvents(reg, events, stdout)
}

// loadRegistryFile loads a registry file, or the registry section of a rules file (one
// with a top-level rules key), whose rules are then checked too.
func loadRegistryFile(data []byte) (*rules.Registry, error) {
	var top map[string]any
	if yaml.Unmarshal(data, &top) == nil {
		if _, ok := top["rules"]; ok {
			cfg, err := rules.Load(data, rules.Options{})
			if err != nil {
				return nil, err
			}
			if cfg.Registry == nil {
				return nil, errors.New("a rules file without a registry section")
			}
			return cfg.Registry, nil
		}
	}
	return rules.LoadRegistry(data) // its errors say registry:, not rules:
}

func listRegistry(reg *rules.Registry, asJSON bool, stdout io.Writer) error {
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, t := range reg.Types() {
			v := map[string]any{"type": t.Type, "description": t.Description, "queue": t.Queue,
				"enabled": t.Enabled, "ephemeral": t.Ephemeral}
			if t.SchemaJSON != nil {
				v["schema"] = json.RawMessage(t.SchemaJSON)
			}
			if err := enc.Encode(v); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tENABLED\tEPHEMERAL\tQUEUE\tSCHEMA\tDESCRIPTION")
	for _, t := range reg.Types() {
		schema, queue := "-", t.Queue
		if t.Schema != nil {
			schema = "yes"
		}
		if queue == "" {
			queue = "(default)"
		}
		fmt.Fprintf(tw, "%s\t%t\t%t\t%s\t%s\t%s\n", t.Type, t.Enabled, t.Ephemeral, queue, schema, t.Description)
	}
	fmt.Fprintf(tw, "(%d types, version %s, unregistered types: %s)\n", len(reg.Types()), reg.Version, reg.Unregistered)
	return tw.Flush()
}

// checkEvents decodes each line of path as dwell does and checks it against reg, printing
// each rejected line and a summary; it fails when any line is rejected.
func checkEvents(reg *rules.Registry, path string, stdout io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	defer f.Close()
	cfg := operators.Config{}
	cfg.EnsureDefaults()
	dec := operators.NewDecoder(&cfg)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), cfg.MaxEventBytes+1)
	counts := map[string]int{}
	var lines, rejected int
	var ev operators.Event
	for n := int64(0); sc.Scan(); n++ {
		lines++
		rec := operators.Record{Topic: path, Offset: n, Value: sc.Bytes(), Timestamp: operators.NoTimestamp}
		check := func(ev *operators.Event, err *operators.DecodeError) {
			if err != nil {
				counts["undecodable"]++
				rejected++
				fmt.Fprintf(stdout, "line %d: %v\n", n+1, err)
				return
			}
			v := reg.Check(ev.Type, ev.Properties)
			switch {
			case v.Reject:
				counts[string(v.Reason)]++
				rejected++
				fmt.Fprintf(stdout, "line %d: %s: %s: %s\n", n+1, ev.Type, v.Reason, v.Detail)
			case v.Ignore:
				counts["ignored"]++
			case v.Unregistered:
				counts["unregistered"]++
			default:
				counts["ok"]++
			}
		}
		switch err := dec.Decode(&rec, &ev); err {
		case operators.ErrBatch: // each of its events, as dwell processes them
			batch := ev
			dec.Elements(&rec, &batch, &ev, func(_ int, _ []byte, ev *operators.Event, err *operators.DecodeError) { check(ev, err) })
		default:
			check(&ev, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("registry: %s: %w", path, err)
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, counts[k])
	}
	fmt.Fprintf(stdout, "%s: %d events: %s\n", path, lines, strings.Join(parts, " "))
	if rejected > 0 {
		return fmt.Errorf("registry: %d of %d events would be dead-lettered", rejected, lines)
	}
	return nil
}
