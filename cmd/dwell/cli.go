package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Command groups of dwell -h.
const (
	cmdGroupProcess = "process"
	cmdGroupKafka   = "kafka"
	cmdGroupRules   = "rules"
	cmdGroupDev     = "dev"
	cmdGroupOther   = "other"
)

// newRootCmd builds the command tree. To add a command: write newXCmd(e) in its own file (bind
// its flags on cmd.Flags(), grouped with inGroup; do the work in RunE), give it a GroupID, and
// add it here. The DWELL_* variables and --config apply to every command's flags before RunE.
func newRootCmd(e *cliEnv) *cobra.Command {
	root := &cobra.Command{
		Use:   "dwell",
		Short: "dwell turns customer-journey events into system events.",
		Long: `dwell turns customer-journey events into system events.

Every flag can also be set by a DWELL_* variable (--visit-gap by DWELL_VISIT_GAP) and, for
commands with --config, by a YAML file keyed by flag name: flag > variable > file > default.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnvAndFile(cmd.Flags(), e.lookupEnv); err != nil {
				return usageError{cmdError{cmd.CommandPath(), errors.Unwrap(err)}}
			}
			e.preRan = true
			return nil
		},
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.AddGroup(
		&cobra.Group{ID: cmdGroupProcess, Title: "Process events:"},
		&cobra.Group{ID: cmdGroupKafka, Title: "Work with Kafka topics, groups and queues:"},
		&cobra.Group{ID: cmdGroupRules, Title: "Rules and the event registry:"},
		&cobra.Group{ID: cmdGroupDev, Title: "Generate and measure:"},
		&cobra.Group{ID: cmdGroupOther, Title: "Other:"},
	)
	root.SetHelpCommandGroupID(cmdGroupOther)
	root.SetCompletionCommandGroupID(cmdGroupOther)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add(cmdGroupProcess, newRunCmd(e), newProcessCmd(e), newCollectCmd(e), newDemoCmd(e))
	add(cmdGroupKafka, newTopicsCmd(e), newProduceCmd(e), newTailCmd(e), newDeliverCmd(e), newMoveCmd(e), newResetCmd(e),
		newLogCmd(e), newSavepointsCmd(e), newProfileCmd(e))
	add(cmdGroupRules, newConfigCmd(e), newRegistryCmd(e), newJobsCmd(e))
	add(cmdGroupDev, newGenCmd(e), newBenchCmd(e))
	add(cmdGroupOther, newVersionCmd(e))
	setup(root)
	return root
}

// setup gives cmd and every command under it dwell's help, flag errors and ordered flags.
func setup(cmd *cobra.Command) {
	cmd.Flags().SortFlags = false
	cmd.SuggestionsMinimumDistance = 2
	cmd.SetHelpFunc(func(c *cobra.Command, _ []string) {
		text := c.Long
		if text == "" {
			text = c.Short
		}
		fmt.Fprintf(c.OutOrStdout(), "%s\n\n%s", strings.TrimSpace(text), usageText(c))
	})
	cmd.SetUsageFunc(func(c *cobra.Command) error {
		fmt.Fprint(c.OutOrStderr(), usageText(c))
		return nil
	})
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		err = flagError(c.Flags(), err)
		sep := ". "
		if strings.HasSuffix(err.Error(), "?") {
			sep = " "
		}
		return usageError{cmdError{c.CommandPath(), fmt.Errorf("%w%sSee '%s -h'.", err, sep, c.CommandPath())}}
	})
	for _, c := range cmd.Commands() {
		setup(c)
	}
}

// rootUsage is what dwell alone prints: the commands, grouped.
func rootUsage(root *cobra.Command) string {
	return root.Short + "\n\n" + usageText(root)
}

// usageText is a command's usage: its synopsis, subcommands by group, and flags by group.
func usageText(c *cobra.Command) string {
	var b strings.Builder
	b.WriteString("Usage:\n")
	if c.Runnable() {
		fmt.Fprintf(&b, "  %s\n", c.UseLine())
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "  %s COMMAND [flags]\n", c.CommandPath())
	}
	if c.Example != "" {
		fmt.Fprintf(&b, "\nExamples:\n%s\n", c.Example)
	}
	if c.HasAvailableSubCommands() {
		c.InitDefaultHelpCmd()
		width := 0
		for _, s := range c.Commands() {
			width = max(width, len(s.Name()))
		}
		list := func(title, group string) {
			var lines []string
			for _, s := range c.Commands() {
				if s.GroupID == group && (s.IsAvailableCommand() || s.Name() == "help") {
					lines = append(lines, fmt.Sprintf("  %-*s  %s\n", width, s.Name(), s.Short))
				}
			}
			if len(lines) > 0 {
				fmt.Fprintf(&b, "\n%s\n%s", title, strings.Join(lines, ""))
			}
		}
		for _, g := range c.Groups() {
			list(g.Title, g.ID)
		}
		list("Commands:", "")
	}
	writeFlagGroups(&b, c.Flags())
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "\nRun '%s COMMAND -h' for a command's flags.\n", c.CommandPath())
	}
	return b.String()
}

// writeFlagGroups lists fs's flags under the groups of their groupAnn annotation, in the order
// of each group's first flag; flags without one go under groupOther, last (help among them).
func writeFlagGroups(w io.Writer, fs *pflag.FlagSet) {
	var order []string
	groups := map[string][]*pflag.Flag{}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		g := groupOther
		if a := f.Annotations[groupAnn]; len(a) > 0 {
			g = a[0]
		}
		if groups[g] == nil {
			order = append(order, g)
		}
		groups[g] = append(groups[g], f)
	})
	if i := indexOf(order, groupOther); i >= 0 {
		order = append(append(order[:i:i], order[i+1:]...), groupOther)
	}
	var all []*pflag.Flag
	for _, g := range order {
		all = append(all, groups[g]...)
	}
	col := flagColumn(all)
	for _, g := range order {
		title := g + ":"
		if len(order) == 1 {
			title = "Flags:"
		}
		fmt.Fprintf(w, "\n%s\n", title)
		writeFlags(w, groups[g], col)
	}
}

const maxFlagColumn = 34

// flagName is a flag's names and placeholder as the help shows them: "-v, --verbose",
// "    --visit-gap DURATION".
func flagName(f *pflag.Flag) string {
	n := "    "
	if f.Shorthand != "" {
		n = "-" + f.Shorthand + ", "
	}
	n += "--" + f.Name
	if p, _ := flagPlaceholder(f); p != "" {
		n += " " + p
	}
	return n
}

// flagColumn is the width of the names column: the longest name up to maxFlagColumn (longer
// ones take a line of their own).
func flagColumn(flags []*pflag.Flag) int {
	col := 0
	for _, f := range flags {
		if n := len(flagName(f)); n <= maxFlagColumn {
			col = max(col, n)
		}
	}
	return col
}

// writeFlags writes one line (wrapped) per flag: its names and placeholder, what it does,
// and its default.
func writeFlags(w io.Writer, flags []*pflag.Flag, col int) {
	const width = 100
	names := make([]string, len(flags))
	for i, f := range flags {
		names[i] = flagName(f)
	}
	for i, f := range flags {
		_, usage := flagPlaceholder(f)
		if d := flagDefault(f); d != "" {
			usage += " (default " + d + ")"
		}
		line := "  " + names[i]
		indent := strings.Repeat(" ", col+4)
		if len(names[i]) > col {
			fmt.Fprintln(w, line)
			line = indent
		} else {
			line += strings.Repeat(" ", col-len(names[i])+2)
		}
		for _, word := range strings.Fields(usage) {
			if len(line)+1+len(word) > width && strings.TrimSpace(line) != "" && len(line) > len(indent) {
				fmt.Fprintln(w, line)
				line = indent
			}
			if len(line) > len(indent) && !strings.HasSuffix(line, "  ") {
				line += " "
			}
			line += word
		}
		fmt.Fprintln(w, line)
	}
}

// flagPlaceholder returns the word that stands for a flag's value (a back-quoted word of its
// usage, else one for its type; none for a switch) and the usage without the quotes.
func flagPlaceholder(f *pflag.Flag) (string, string) {
	name, usage := pflag.UnquoteUsage(f)
	if strings.Contains(f.Usage, "`") {
		// "`MODE`: exactly-once or ..." reads "--guarantee MODE  exactly-once or ...".
		return name, strings.TrimPrefix(usage, name+": ")
	}
	switch f.Value.Type() {
	case "bool":
		return "", usage
	case "duration":
		return "DURATION", usage
	case "int", "int64", "uint64":
		return "N", usage
	case "float64":
		return "NUMBER", usage
	case "list":
		return "LIST", usage
	}
	return "STRING", usage
}

// flagDefault is a flag's default as the help shows it, or "" for none (a zero value).
func flagDefault(f *pflag.Flag) string {
	switch f.DefValue {
	case "", "0", "0s", "false", "[]":
		return ""
	}
	switch f.Value.Type() {
	case "string":
		return strconv.Quote(f.DefValue)
	case "duration":
		if d, err := time.ParseDuration(f.DefValue); err == nil {
			return shortDuration(d)
		}
	}
	if f.Name == "help" {
		return ""
	}
	return f.DefValue
}

// shortDuration writes 30m for 30m0s and 12h for 12h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// noArgs refuses positional arguments, naming the first.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{cmdError{cmd.CommandPath(), fmt.Errorf("unexpected argument %q; see '%s -h'", args[0], cmd.CommandPath())}}
	}
	return nil
}

// maxArgs allows at most n positional arguments, named what in the errors.
func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageError{cmdError{cmd.CommandPath(), fmt.Errorf("unexpected argument %q after the %s; see '%s -h'", args[n], what, cmd.CommandPath())}}
		}
		return nil
	}
}

// parentCmd is a command that only groups subcommands (dwell config, dwell registry):
// without one, or with an unknown one, it is a usage error; help prints its subcommands.
func parentCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var names []string
			for _, c := range cmd.Commands() {
				names = append(names, c.Name())
			}
			if len(args) == 0 {
				return usageError{cmdError{cmd.CommandPath(), fmt.Errorf("name a command: %s; see '%s -h'", strings.Join(names, ", "), cmd.CommandPath())}}
			}
			msg := fmt.Sprintf("unknown command %q", args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %q?", s[0])
			} else {
				msg += fmt.Sprintf(" (%s); see '%s -h'", strings.Join(names, ", "), cmd.CommandPath())
			}
			return usageError{cmdError{cmd.CommandPath(), errors.New(msg)}}
		},
	}
}

func newVersionCmd(e *cliEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print dwell's version, commit and Go version",
		Args:  noArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprintln(e.stdout, "dwell", readBuildInfo()) },
	}
}
