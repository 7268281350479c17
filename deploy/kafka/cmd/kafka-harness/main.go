// Command kafka-harness starts and stops real Apache Kafka brokers on loopback for people and
// for `make test-kafka`:
//
//	go run ./deploy/kafka/cmd/kafka-harness up [--brokers 1|3] [--dir DIR]   # prints the bootstrap address
//	go run ./deploy/kafka/cmd/kafka-harness down [--dir DIR]
//	go run ./deploy/kafka/cmd/kafka-harness fetch                             # only download the jars
//
// `up` leaves the brokers running in the background and writes their address to DIR/bootstrap;
// `down` stops them (SIGTERM, then SIGKILL after a minute) and removes DIR. Exit status: 0 done,
// 1 failure, 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dwellhq/dwell/deploy/kafka"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: kafka-harness up|down|fetch [--brokers N] [--dir DIR]")
		return 2
	}
	fs := flag.NewFlagSet("kafka-harness "+args[0], flag.ContinueOnError)
	def := os.Getenv("DWELL_KAFKA_DIR")
	if def == "" {
		def = filepath.Join(os.TempDir(), "dwell-kafka")
	}
	dir := fs.String("dir", def, "directory for the brokers' configuration, data and logs ($DWELL_KAFKA_DIR)")
	nodes := fs.Int("brokers", 1, "number of combined broker+controller nodes (1 or 3)")
	heap := fs.Int("heap-mb", 0, "JVM heap per broker in MiB (default 384)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := kafka.Config{Nodes: *nodes, Dir: *dir, HeapMB: *heap, Detach: true, Logger: log}
	var err error
	switch args[0] {
	case "fetch":
		var libs string
		if libs, err = kafka.Fetch(ctx, cfg); err == nil {
			fmt.Println(libs)
		}
	case "up":
		err = up(ctx, cfg)
	case "down":
		err = down(*dir)
	default:
		fmt.Fprintf(os.Stderr, "kafka-harness: unknown command %q: use up, down or fetch\n", args[0])
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func up(ctx context.Context, cfg kafka.Config) error {
	if _, err := os.Stat(filepath.Join(cfg.Dir, "bootstrap")); err == nil {
		return fmt.Errorf("kafka-harness: brokers already up in %s; run `make kafka-down` first", cfg.Dir)
	}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return err
	}
	started := time.Now()
	c, err := kafka.Start(ctx, cfg)
	if err != nil {
		// Whatever did start must not linger.
		_ = down(cfg.Dir)
		return err
	}
	addr := strings.Join(c.Bootstrap(), ",")
	if err := os.WriteFile(filepath.Join(cfg.Dir, "bootstrap"), []byte(addr+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "kafka-harness: %d broker(s) up in %s (logs in %s/node*/logs)\n",
		c.Nodes(), time.Since(started).Round(100*time.Millisecond), cfg.Dir)
	fmt.Println(addr)
	return nil
}

// down stops every node whose pid file is under dir and removes dir.
func down(dir string) error {
	pids, _ := filepath.Glob(filepath.Join(dir, "node*", "pid"))
	var errs []error
	for _, f := range pids {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		p, _ := os.FindProcess(pid)
		if err := p.Signal(syscall.SIGTERM); err != nil {
			continue // already gone
		}
		deadline := time.Now().Add(time.Minute)
		for p.Signal(syscall.Signal(0)) == nil {
			if time.Now().After(deadline) {
				_ = p.Signal(syscall.SIGKILL)
				errs = append(errs, fmt.Errorf("kafka-harness: broker pid %d ignored SIGTERM for a minute; killed", pid))
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
