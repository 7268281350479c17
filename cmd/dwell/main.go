// Command dwell turns customer-journey events into system events. See the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/dwellhq/dwell/state"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the run failed: I/O, broker, state
	exitUsage   = 2 // bad command line or configuration
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal finishes the work in flight; once it has been seen, default handling is
	// restored, so a second signal kills the process at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError marks errors that exit with exitUsage.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// cmdError is an error of the command line that names its command itself ("dwell run: ...").
type cmdError struct {
	cmd string // "dwell run"
	err error
}

func (e cmdError) Error() string { return e.cmd + ": " + e.err.Error() }
func (e cmdError) Unwrap() error { return e.err }

// cliEnv is what every command gets from run: the standard streams and the environment.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
	// preRan is set once the command line parsed and the environment and the config file
	// applied: errors before that are usage errors.
	preRan bool
}

// getenv is os.Getenv through lookupEnv.
func (e *cliEnv) getenv(k string) string {
	v, _ := e.lookupEnv(k)
	return v
}

// run runs the command line args and returns the exit code: 0 ok, 1 failure, 2 usage.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &cliEnv{stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: os.LookupEnv}
	root := newRootCmd(e)
	if len(args) == 0 {
		fmt.Fprint(stderr, rootUsage(root))
		return exitUsage
	}
	if err := checkCommand(root, args); err != nil {
		return report(stderr, err)
	}
	if target, _, err := root.Find(args); err == nil {
		target.InitDefaultHelpFlag()
		args = rewriteSingleDash(target.Flags(), args)
	}
	root.SetArgs(args)
	_, err := root.ExecuteContextC(ctx)
	if err != nil && !e.preRan {
		var ue usageError
		if !errors.As(err, &ue) {
			err = usageError{err}
		}
	}
	return report(stderr, err)
}

// checkCommand refuses an unknown command, suggesting the closest one.
func checkCommand(root *cobra.Command, args []string) error {
	name := args[0]
	if strings.HasPrefix(name, "-") {
		return nil
	}
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return nil
		}
	}
	if name == cobra.ShellCompRequestCmd || name == cobra.ShellCompNoDescRequestCmd {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q", name)
	if s := root.SuggestionsFor(name); len(s) > 0 {
		msg += fmt.Sprintf("; did you mean %q?", s[0])
	} else {
		msg += "; see 'dwell -h'"
	}
	return usageError{errors.New(msg)}
}

// report prints err, if any, and returns its exit code.
func report(stderr io.Writer, err error) int {
	var (
		ue    usageError
		ce    cmdError
		inUse *state.InUseError
	)
	if errors.As(err, &inUse) { // whatever wraps it, the one thing to say
		err = inUse
	}
	prefix := "dwell: "
	if errors.As(err, &ce) {
		prefix = ""
	}
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, prefix+err.Error())
		return exitUsage
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "dwell: interrupted")
		return exitFailure
	default:
		fmt.Fprintln(stderr, prefix+err.Error())
		return exitFailure
	}
}
