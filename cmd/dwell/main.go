// Command dwell turns customer-journey events into system events. See the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
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

const usage = `dwell turns customer-journey events into system events.

Usage:
  dwell run --brokers HOST:PORT [flags]            the live processor (exactly-once)
  dwell process --in FILE|- [--out DIR] [flags]   process JSON Lines offline
  dwell demo [--offline] [--duration D]            the live pipeline on an embedded test broker
  dwell produce --brokers H:P --topic T [--rps N]  generated web tracking into any Kafka
  dwell tail TOPIC --brokers H:P [--from-start]    print committed records as JSON lines
  dwell gen [--events N] [--out FILE] [flags]      write a generated web-tracking stream
  dwell bench web|nexmark|restore [flags]          measure throughput, latency and memory
  dwell deliver --queue NAME --url URL [flags]     deliver a queue's records as webhooks
  dwell move --from T --to T [--filter EXPR]       copy matching records (dead letters) for reprocessing
  dwell reset --group G --to-earliest|--to-datetime T [--execute]
                                                   rewind a stopped group: offsets and state together
  dwell log [--type T] [--profile P] [--state S]   search the event log (--since 1h, --json)
  dwell savepoints list [--group G] [--json]       list the savepoints dwell run writes, per partition
  dwell config validate|apply FILE [--registry F]  check rules; publish them to running instances
  dwell version

Run 'dwell COMMAND -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stderr)
	case "process":
		err = cmdProcess(ctx, args[1:], stdin, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout, stderr)
	case "produce":
		err = cmdProduce(ctx, args[1:], stdout, stderr)
	case "tail":
		err = cmdTail(ctx, args[1:], stdout, stderr)
	case "gen":
		err = cmdGen(ctx, args[1:], stdout, stderr)
	case "bench":
		err = cmdBench(ctx, args[1:], stdout, stderr)
	case "deliver":
		err = cmdDeliver(ctx, args[1:], stderr)
	case "move":
		err = cmdMove(ctx, args[1:], stdout, stderr)
	case "reset":
		err = cmdReset(ctx, args[1:], stdout, stderr)
	case "log":
		err = cmdLog(ctx, args[1:], stdout, stderr)
	case "savepoints":
		err = cmdSavepoints(ctx, args[1:], stdout, stderr)
	case "registry":
		err = cmdRegistry(args[1:], stdout, stderr)
	case "config":
		err = cmdConfig(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "dwell", version())
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "dwell: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "dwell:", err)
		return exitUsage
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "dwell: interrupted")
		return exitFailure
	default:
		fmt.Fprintln(stderr, "dwell:", err)
		return exitFailure
	}
}
