package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/admin"
	"github.com/dwellhq/dwell/pipeline/rulesrc"
	"github.com/dwellhq/dwell/state"
)

// newRunCmd is dwell run, the live processor: it runs until ctx is cancelled (SIGINT/SIGTERM):
// the cycle in flight finishes and commits, then it exits 0. With --rules/--registry or
// --config-topic, new rule versions are applied while it runs (SIGHUP reloads the files).
func newRunCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run --brokers HOST:PORT [flags]",
		Short: "the live processor: Kafka in, system events out, exactly once",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	cfg := pipeline.DefaultLiveConfig() // each flag's default is the field's value
	var (
		brokers, inputs, eventLog, metricsAddr *string
		createTopics                           *bool
		logf                                   *logFlags
		partitions                             *int
		adm                                    adminFlags
	)
	brokers = bindBrokers(fs)
	kafka := bindKafka(fs)
	inGroup(fs, groupKafka, func() {
		fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer `GROUP`")
		fs.StringVar(&cfg.Guarantee, "guarantee", cfg.Guarantee, "`MODE`: exactly-once (a transaction per cycle) or at-least-once (no transactions; repeats after a crash carry the same ids)")
		fs.StringVar(&cfg.Compression, "compression", cfg.Compression, "`CODEC` of produced batches: lz4, zstd, snappy or none")
		fs.DurationVar(&cfg.TransactionTimeout, "transaction-timeout", cfg.TransactionTimeout, "how long a transaction may stay open: a cycle must end within it, and a crashed instance's open transaction holds back readers this long (a restart on the same data dir ends it at once)")
		fs.DurationVar(&cfg.GroupSessionTimeout, "group-session-timeout", cfg.GroupSessionTimeout, "how long the group waits for a silent instance before moving its partitions")
		createTopics = fs.Bool("create-topics", false, "create missing inputs (--partitions), output and internal topics (the changelog compacted), the topics a rule set writes to, and the --config-topic")
		partitions = fs.Int("partitions", defaultPartitions, "`N` partitions of the input topics --create-topics creates (outputs take the inputs' count)")
	})
	inGroup(fs, groupIO, func() {
		inputs = fs.String("inputs", "events", "input `TOPIC,...` (co-partitioned, keyed by profile id)")
		bindOutputTopics(fs, &cfg)
		eventLog = fs.String("event-log", "", "`WHICH` events go to the event log: all, errors or none (default: all with a rules source, else none)")
		fs.StringVar(&cfg.Topics.QueuePrefix, "queue-topic-prefix", cfg.Topics.QueuePrefix, "queue topics are this `PREFIX` plus the queue name (notifications, routed events)")
	})
	bindOperators(fs, &cfg.Operators)
	rf := &ruleFlags{}
	inGroup(fs, groupRules, func() { rf.bind(fs) })
	inGroup(fs, groupState, func() {
		fs.StringVar(&cfg.DataDir, "data-dir", "data", "`DIR` of the local state (Pebble); rebuildable from the changelog")
		fs.StringVar(&cfg.ApplicationID, "application-id", "", "`ID` that names the internal topics (<id>.changelog, <id>.savepoints, <id>.savepoint-data) and is recorded in the data dir; default the --group")
		cfg.Topics.Changelog, cfg.Topics.Savepoints, cfg.Topics.SavepointData = "", "", ""
		fs.StringVar(&cfg.Topics.Changelog, "changelog-topic", "", "state changelog `TOPIC` (compacted); default <application-id>.changelog")
		fs.DurationVar(&cfg.SavepointInterval, "savepoint-interval", cfg.SavepointInterval, "how often each partition writes a savepoint (its state and input offsets, for dwell reset --to-datetime); negative: never")
		fs.IntVar(&cfg.SavepointCycleBytes, "savepoint-cycle-bytes", cfg.SavepointCycleBytes, "savepoint data one partition writes per processing cycle, so that a savepoint spreads over cycles and slows none much")
		fs.DurationVar(&cfg.SavepointRetention, "savepoint-retention", cfg.SavepointRetention, "how long the savepoint topics keep savepoints (retention.ms of the topics --create-topics makes)")
		fs.IntVar(&cfg.MaxCachedKeys, "max-cached-keys", cfg.MaxCachedKeys, "keys kept in memory per partition; the rest are read from Pebble")
	})
	inGroup(fs, groupLimits, func() {
		fs.IntVar(&cfg.MaxPollRecords, "max-poll-records", cfg.MaxPollRecords, "records per processing cycle (one transaction)")
		fs.IntVar(&cfg.MaxCycleWork, "max-cycle-work", cfg.MaxCycleWork, "work one partition may do in one cycle: events processed, timers fired, cold keys loaded; the rest goes on at the next cycle, with the same output")
		fs.IntVar(&cfg.MaxCycleLoads, "max-cycle-loads", cfg.MaxCycleLoads, "evicted keys one partition may load back from Pebble in one cycle (they stay in memory until it ends)")
		fs.DurationVar(&cfg.MaxCycleTime, "max-cycle-time", 0, "time one cycle may spend processing before the rest goes on at the next cycle (default a third of --transaction-timeout)")
		fs.DurationVar(&cfg.FailureTimeout, "failure-timeout", cfg.FailureTimeout, "how long processing may keep failing (brokers unreachable, a restore that cannot read the changelog, a record that cannot be written), retrying with backoff, before dwell exits 1")
	})
	inGroup(fs, groupObserve, func() {
		metricsAddr = fs.String("metrics-addr", "localhost:9090", "serve /metrics, /healthz and /readyz at `HOST:PORT` (empty: do not serve)")
		fs.DurationVar(&cfg.StallTimeout, "stall-timeout", cfg.StallTimeout, "a partition whose cycles have not committed for this long is stalled: /readyz fails and dwell_partition_stalled is 1")
		fs.StringVar(&cfg.KafkaLogLevel, "kafka-log-level", cfg.KafkaLogLevel, "what the Kafka client logs, a `LEVEL`: none, error, warn, info or debug")
	})
	inGroup(fs, groupAdmin, func() { adm.bind(fs, true) })
	logf = bindLog(fs, "info")
	bindConfigFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *partitions <= 0 {
			return usageError{fmt.Errorf("run: --partitions must be positive, got %d", *partitions)}
		}
		return runLive(cmd.Context(), e, cfg, rf, kafka, &adm, *brokers, *inputs, *eventLog, *metricsAddr, *createTopics, int32(*partitions), logf)
	}
	return cmd
}

// bindOutputTopics binds the output topics' names of dwell run (and dwell topics create --all).
func bindOutputTopics(fs *pflag.FlagSet, cfg *pipeline.LiveConfig) {
	fs.StringVar(&cfg.Topics.System, "system-topic", cfg.Topics.System, "system events output `TOPIC`")
	fs.StringVar(&cfg.Topics.Events, "events-topic", cfg.Topics.Events, "processed events output `TOPIC`")
	fs.StringVar(&cfg.Topics.Late, "late-topic", cfg.Topics.Late, "late events output `TOPIC`")
	fs.StringVar(&cfg.Topics.Dead, "dlq-topic", cfg.Topics.Dead, "dead-letter output `TOPIC`")
	fs.StringVar(&cfg.Topics.EventLog, "event-log-topic", cfg.Topics.EventLog, "event log `TOPIC` (one record per processed event; see --event-log)")
}

// bindConfigFlag binds --config, which applyEnvAndFile reads.
func bindConfigFlag(fs *pflag.FlagSet) {
	inGroup(fs, groupOther, func() {
		fs.String("config", "", "YAML `FILE` of settings keyed by flag name (flags and DWELL_* variables win)")
	})
}

func runLive(ctx context.Context, e *cliEnv, cfg pipeline.LiveConfig, rf *ruleFlags, kafka *kafkaFlags, adm *adminFlags,
	brokers, inputs, eventLog, metricsAddr string, createTopics bool, partitions int32, logf *logFlags,
) error {
	stderr := e.stderr
	cfg.Brokers = splitList(brokers)
	cfg.Inputs = splitList(inputs)
	if rf.fromFiles() && rf.topic != "" {
		return usageError{errors.New("run: rules come from files (--rules, --registry) or from --config-topic, not both")}
	}
	switch eventLog {
	case "":
		cfg.EventLog = "none"
		if rf.given() {
			cfg.EventLog = "all"
		}
	case "all", "errors", "none":
		cfg.EventLog = eventLog
	default:
		return usageError{fmt.Errorf("run: --event-log %q: use all, errors or none", eventLog)}
	}
	cfg.CreateTopics = createTopics
	cfg.ConfigTopic = rf.topic
	var err error
	if cfg.Logger, err = logf.logger(stderr); err != nil {
		return err
	}
	// Before any broker is contacted; the operators' settings as given (a zero is not a default).
	if err := errors.Join(cfg.Operators.Validate(), cfg.Validate()); err != nil {
		return usageError{err}
	}
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	cfg.ClientOpts = kopts
	if err := ensureRunTopics(ctx, cfg, createTopics, partitions, 0); err != nil {
		return err
	}
	reg := newRegistry()
	cfg.Metrics = pipeline.NewMetrics(reg)

	// The rules to start with, and where new versions come from.
	var src rulesrc.Source
	if rf.given() {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		if src, err = rf.source(ctx, &cfg, hup, rulesrc.NewMetrics(reg)); err != nil {
			return err
		}
		defer src.Close()
		if cfg.Rules, err = src.Load(ctx); err != nil {
			return err
		}
	}
	// The admin API listens before the processor starts: a port in use is an error at once,
	// and the URL it is reached at goes into the consumer's client id (forwarding).
	var adminCfg admin.Config
	var adminLn net.Listener
	// A second instance on this data dir is refused for that, not for the ports it shares.
	if err := state.CheckDataDir(cfg.DataDir); err != nil {
		return err
	}
	if adm.addr != "" {
		var err error
		if adminLn, cfg.AdvertisedAdminURL, err = adm.listen(); err != nil {
			return err
		}
		defer adminLn.Close() // when NewLive or admin.New fails; the server closes it otherwise
		token, made, err := adm.token(e.lookupEnv, cfg.DataDir, true)
		if err != nil {
			return err
		}
		if made {
			cfg.Logger.Info("admin API token written; dwell profile reads it from there, or set DWELL_ADMIN_TOKEN", "file", filepath.Join(cfg.DataDir, adminTokenFile))
		}
		adminCfg = admin.Config{Listener: adminLn, Token: token, AdvertisedURL: cfg.AdvertisedAdminURL,
			Pprof: adm.pprof, Logger: cfg.Logger, Registry: reg}
	}
	live, err := pipeline.NewLive(cfg)
	if err != nil {
		if errors.Is(err, pipeline.ErrConfig) {
			return usageError{err}
		}
		return err
	}
	var adminSrv *admin.Server
	if adminLn != nil {
		adminCfg.Owners = live
		if adminSrv, err = admin.New(adminCfg, live); err != nil {
			return errors.Join(usageError{err}, live.Close())
		}
	}
	// The watcher stops before the processor closes; if it cannot go on, neither does the run,
	// rather than run on with rules that no longer follow their source.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	watchCtx, stopWatch := context.WithCancel(runCtx)
	var watchErr error
	var watching sync.WaitGroup
	if src != nil {
		watching.Go(func() {
			if err := src.Watch(watchCtx, live.SetRules); err != nil {
				watchErr = fmt.Errorf("rules: %w", err)
				cancelRun()
			}
		})
	}
	if metricsAddr != "" {
		_, stop, err := serveHTTP(metricsAddr, reg, live.Readiness, cfg.Logger)
		if err != nil {
			stopWatch()
			watching.Wait()
			return errors.Join(err, live.Close())
		}
		defer stop()
	}
	cfg.Logger.Info("dwell running", "brokers", cfg.Brokers, "inputs", cfg.Inputs, "group", cfg.Group, "data_dir", cfg.DataDir,
		"rules", live.RuleSetVersion(), "event_log", cfg.EventLog)
	// The admin API serves until the processor stops; queries need the processor's Kafka
	// client (forwarding), so both end before it closes.
	var adminErr error
	var serving sync.WaitGroup
	adminCtx, stopAdmin := context.WithCancel(runCtx)
	if adminSrv != nil {
		serving.Go(func() {
			if err := adminSrv.Run(adminCtx); err != nil {
				adminErr = err
				cancelRun()
			}
		})
	}
	runErr := live.Run(runCtx)
	stopAdmin()
	serving.Wait()
	stopWatch()
	watching.Wait()
	if err := errors.Join(runErr, watchErr, adminErr, live.Close()); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	cfg.Logger.Info("dwell stopped cleanly")
	return nil
}

// ruleFlags say where dwell run's rules come from: files, or the config topic.
type ruleFlags struct {
	rules, registry, topic string
	interval               time.Duration
}

func (r *ruleFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&r.rules, "rules", "", "rules `FILE` (workflows); reloaded on SIGHUP and when it changes")
	fs.StringVar(&r.registry, "registry", "", "event registry `FILE` (unless the rules file has a registry section); reloaded with the rules")
	fs.StringVar(&r.topic, "config-topic", "", "follow the rule sets dwell config apply publishes to this `TOPIC` (e.g. "+rulesrc.DefaultTopic+") instead of files")
	fs.DurationVar(&r.interval, "reload-interval", 2*time.Second, "how often --rules and --registry are checked for changes (0: only on SIGHUP)")
}

func (r *ruleFlags) fromFiles() bool { return r.rules != "" || r.registry != "" }
func (r *ruleFlags) given() bool     { return r.fromFiles() || r.topic != "" }

// source returns the source of the rules: the files, or the config topic (checked, or created
// with --create-topics). hup reloads the files, or retries a version the processor refused.
func (r *ruleFlags) source(ctx context.Context, cfg *pipeline.LiveConfig, hup <-chan os.Signal, m *rulesrc.Metrics) (rulesrc.Source, error) {
	if r.fromFiles() {
		interval := r.interval
		if interval <= 0 {
			interval = -1 // only on SIGHUP
		}
		return rulesrc.NewFiles(rulesrc.FileConfig{RulesPath: r.rules, RegistryPath: r.registry, Interval: interval,
			Signals: hup, Logger: cfg.Logger, Metrics: m}), nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	err = rulesrc.EnsureTopic(ctx, cl, r.topic, cfg.CreateTopics)
	cl.Close()
	if errors.Is(err, rulesrc.ErrNoTopic) {
		return nil, fmt.Errorf("run: %w, or pass --create-topics", err)
	}
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return rulesrc.NewTopic(rulesrc.TopicConfig{Brokers: cfg.Brokers, ClientOpts: cfg.ClientOpts, Topic: r.topic,
		Signals: hup, Logger: cfg.Logger, Metrics: m})
}
