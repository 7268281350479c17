// Package kafka runs real Apache Kafka brokers (KRaft, combined broker+controller nodes) on
// loopback for dwell's integration and fault suites.
//
// The broker's jars come from Maven Central through the pom.xml beside this file and are cached
// outside the repository (Fetch). Start formats storage for one or three nodes on free ports,
// starts one JVM per node and waits until every node answers and the cluster can take
// transactions. Nodes can be stopped, killed and started again to inject faults. Every JVM
// started for a test dies with the test process (Pdeathsig), even when the test fails.
//
// For people, `make kafka-up` and `make kafka-down` wrap the command in ./cmd/kafka-harness.
package kafka

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

//go:embed pom.xml
var pom []byte

//go:embed server.properties.tmpl
var serverTemplate string

//go:embed log4j2.yaml
var log4jConfig []byte

// DefaultVersion is the Kafka release the harness fetches: the newest 4.x that works here.
const DefaultVersion = "4.4.0"

// Config describes a cluster to start.
type Config struct {
	// Nodes is the number of combined broker+controller nodes: 1 (default) or 3.
	Nodes int
	// Dir holds each node's configuration, data and logs. Required.
	Dir string
	// Version of Apache Kafka. Default DefaultVersion, or $DWELL_KAFKA_VERSION.
	Version string
	// Cache is where the jars are kept. Default $DWELL_KAFKA_CACHE, else
	// $XDG_CACHE_HOME/dwell/kafka (~/.cache/dwell/kafka).
	Cache string
	// HeapMB is each broker's JVM heap. Default 384: three of them fit beside dwell on a small
	// machine.
	HeapMB int
	// Detach starts the JVMs in their own session so they outlive this process (kafka-up).
	// Otherwise they are killed when this process dies.
	Detach bool
	// Logger, default discard.
	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Nodes == 0 {
		c.Nodes = 1
	}
	if c.Nodes < 1 || c.Nodes > 9 {
		return fmt.Errorf("kafka harness: %d nodes: use 1 to 9", c.Nodes)
	}
	if c.Dir == "" {
		return errors.New("kafka harness: no directory for the cluster's data; set Config.Dir")
	}
	if c.Version == "" {
		c.Version = os.Getenv("DWELL_KAFKA_VERSION")
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.Cache == "" {
		c.Cache = os.Getenv("DWELL_KAFKA_CACHE")
	}
	if c.Cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("kafka harness: no cache directory (%w); set DWELL_KAFKA_CACHE", err)
		}
		c.Cache = filepath.Join(base, "dwell", "kafka")
	}
	if c.HeapMB == 0 {
		c.HeapMB = 384
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Available reports why the harness cannot run here (no java or mvn on PATH), or nil.
func Available() error {
	var missing []string
	for _, bin := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kafka harness: %s not installed", strings.Join(missing, " and "))
	}
	return nil
}

// Fetch makes sure the jars of cfg.Version are in the cache, downloading them with Maven when
// they are not, and returns the directory that holds them.
func Fetch(ctx context.Context, cfg Config) (string, error) {
	if err := cfg.defaults(); err != nil {
		return "", err
	}
	dir := filepath.Join(cfg.Cache, cfg.Version)
	libs := filepath.Join(dir, "libs")
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return libs, nil
	}
	if err := Available(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("kafka harness: %w", err)
	}
	pomPath := filepath.Join(dir, "pom.xml")
	if err := os.WriteFile(pomPath, pom, 0o644); err != nil {
		return "", fmt.Errorf("kafka harness: %w", err)
	}
	// A partial copy from an interrupted run is removed first, so libs never mixes versions.
	if err := os.RemoveAll(libs); err != nil {
		return "", fmt.Errorf("kafka harness: %w", err)
	}
	cfg.Logger.Info("fetching Apache Kafka from Maven Central", "version", cfg.Version, "cache", dir)
	cmd := exec.CommandContext(ctx, "mvn", "-B", "-q", "-f", pomPath, "-Dkafka.version="+cfg.Version,
		"dependency:copy-dependencies", "-DoutputDirectory="+libs)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kafka harness: mvn could not fetch Apache Kafka %s (%w); is Maven Central reachable?\n%s",
			cfg.Version, err, tail(out.Bytes(), 4000))
	}
	if _, err := os.Stat(filepath.Join(libs, "kafka_2.13-"+cfg.Version+".jar")); err != nil {
		return "", fmt.Errorf("kafka harness: mvn ran but kafka_2.13-%s.jar is not in %s", cfg.Version, libs)
	}
	if err := os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644); err != nil {
		return "", fmt.Errorf("kafka harness: %w", err)
	}
	return libs, nil
}

// Cluster is a running set of nodes.
type Cluster struct {
	cfg   Config
	libs  string
	nodes []*node
}

type node struct {
	id             int
	port, ctrlPort int
	dir            string
	cmd            *exec.Cmd
	done           chan struct{} // closed when cmd has been waited for
}

// Start fetches the jars if needed, formats storage for cfg.Nodes nodes, starts them and waits
// until the cluster serves requests. Close stops it.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	libs, err := Fetch(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, libs: libs}
	ports, err := freePorts(2 * cfg.Nodes)
	if err != nil {
		return nil, err
	}
	var voters []string
	for i := range cfg.Nodes {
		n := &node{id: i + 1, port: ports[2*i], ctrlPort: ports[2*i+1], dir: filepath.Join(cfg.Dir, "node"+strconv.Itoa(i+1))}
		c.nodes = append(c.nodes, n)
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", n.id, n.ctrlPort))
	}
	tmpl, err := template.New("server.properties").Option("missingkey=error").Parse(serverTemplate)
	if err != nil {
		return nil, fmt.Errorf("kafka harness: %w", err)
	}
	clusterID := newClusterID()
	minISR := 1
	if cfg.Nodes >= 3 {
		minISR = 2
	}
	for _, n := range c.nodes {
		if err := os.MkdirAll(filepath.Join(n.dir, "logs"), 0o755); err != nil {
			return nil, fmt.Errorf("kafka harness: %w", err)
		}
		var props bytes.Buffer
		err := tmpl.Execute(&props, map[string]any{
			"NodeID": n.id, "Voters": strings.Join(voters, ","), "Port": n.port, "ControllerPort": n.ctrlPort,
			"LogDir": filepath.Join(n.dir, "data"), "Replication": min(cfg.Nodes, 3), "MinISR": minISR,
		})
		if err != nil {
			return nil, fmt.Errorf("kafka harness: %w", err)
		}
		if err := os.WriteFile(filepath.Join(n.dir, "server.properties"), props.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("kafka harness: %w", err)
		}
		if err := os.WriteFile(filepath.Join(n.dir, "log4j2.yaml"), log4jConfig, 0o644); err != nil {
			return nil, fmt.Errorf("kafka harness: %w", err)
		}
		format := c.java(ctx, n, "kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", clusterID,
			"-c", filepath.Join(n.dir, "server.properties"))
		if out, err := format.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("kafka harness: formatting node %d failed (%w):\n%s", n.id, err, tail(out, 4000))
		}
	}
	for i := range c.nodes {
		if err := c.StartNode(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitReady(ctx, 2*time.Minute); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// java builds a JVM command for node n running class main.
func (c *Cluster) java(ctx context.Context, n *node, main string, args ...string) *exec.Cmd {
	jvm := []string{
		"-Xms" + strconv.Itoa(c.cfg.HeapMB/2) + "m", "-Xmx" + strconv.Itoa(c.cfg.HeapMB) + "m",
		"-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
		"-XX:TieredStopAtLevel=1", // C1 only: much less CPU at start-up on two cores
		"-Djava.awt.headless=true",
		"-Dkafka.logs.dir=" + filepath.Join(n.dir, "logs"),
		"-Dlog4j2.configurationFile=" + filepath.Join(n.dir, "log4j2.yaml"),
		"-cp", filepath.Join(c.libs, "*"), main,
	}
	cmd := exec.CommandContext(ctx, "java", append(jvm, args...)...)
	cmd.Dir = n.dir
	return cmd
}

// StartNode starts node i (0-based) again after StopNode or KillNode.
func (c *Cluster) StartNode(i int) error {
	n := c.nodes[i]
	if n.cmd != nil {
		return fmt.Errorf("kafka harness: node %d is already running", n.id)
	}
	// Not CommandContext: a node's life is managed by Stop/Kill/Close, not by a context.
	cmd := c.java(context.Background(), n, "kafka.Kafka", filepath.Join(n.dir, "server.properties"))
	cmd.Cancel = nil
	out, err := os.OpenFile(filepath.Join(n.dir, "logs", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("kafka harness: %w", err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if c.cfg.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// The JVM dies with us, even if we are killed; no broker outlives a failed test.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("kafka harness: starting node %d: %w", n.id, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	if c.cfg.Detach {
		out.Close()
		return os.WriteFile(filepath.Join(n.dir, "pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	}
	go func(done chan struct{}) {
		defer close(done)
		_ = cmd.Wait()
		out.Close()
	}(n.done)
	return nil
}

// StopNode shuts node i down cleanly (SIGTERM, controlled shutdown) and waits for it.
func (c *Cluster) StopNode(i int) error { return c.signal(i, syscall.SIGTERM, time.Minute) }

// KillNode kills node i with SIGKILL: no controlled shutdown, as in a machine failure.
func (c *Cluster) KillNode(i int) error { return c.signal(i, syscall.SIGKILL, 30*time.Second) }

func (c *Cluster) signal(i int, sig syscall.Signal, wait time.Duration) error {
	n := c.nodes[i]
	if n.cmd == nil {
		return nil
	}
	defer func() { n.cmd = nil }()
	_ = n.cmd.Process.Signal(sig)
	if c.cfg.Detach {
		return nil
	}
	select {
	case <-n.done:
		return nil
	case <-time.After(wait):
		_ = n.cmd.Process.Kill()
		<-n.done
		return fmt.Errorf("kafka harness: node %d did not stop within %s after %s; killed", n.id, wait, sig)
	}
}

// Close stops every node, in reverse order so the last controller goes last. A node whose
// controlled shutdown cannot finish (its peers are gone) is killed after 15 seconds.
func (c *Cluster) Close() error {
	for i := len(c.nodes) - 1; i >= 0; i-- {
		_ = c.signal(i, syscall.SIGTERM, 15*time.Second)
	}
	return nil
}

// Bootstrap is the address list for clients: every node's listener.
func (c *Cluster) Bootstrap() []string {
	var addrs []string
	for _, n := range c.nodes {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(n.port))
	}
	return addrs
}

// Nodes is the number of nodes.
func (c *Cluster) Nodes() int { return len(c.nodes) }

// LogDir is where node i writes its logs (server.log, stdout.log).
func (c *Cluster) LogDir(i int) string { return filepath.Join(c.nodes[i].dir, "logs") }

// WaitReady waits until every running node is a broker in the cluster's metadata and a
// transactional producer can initialise (the transaction coordinator is up), which is what dwell
// needs before its first cycle.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	running := 0
	for _, n := range c.nodes {
		if n.cmd != nil {
			running++
			select {
			case <-n.done:
				return fmt.Errorf("kafka harness: node %d exited while starting; see %s", n.id, filepath.Join(n.dir, "logs"))
			default:
			}
		}
	}
	var last error
	for {
		last = c.probe(ctx, running)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka harness: cluster not ready after %s: %w (logs in %s)", timeout, last, c.cfg.Dir)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Cluster) probe(ctx context.Context, want int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Bootstrap()...), kgo.TransactionalID("dwell-harness-probe"),
		kgo.RequestRetries(1), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	meta, err := kadm.NewClient(cl).BrokerMetadata(pctx)
	if err != nil {
		return err
	}
	if len(meta.Brokers) < want {
		return fmt.Errorf("%d of %d brokers registered", len(meta.Brokers), want)
	}
	// InitProducerID with a transactional id needs the transaction coordinator.
	_, _, err = cl.ProducerID(pctx)
	return err
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kafka harness: no free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// newClusterID is a random Kafka cluster id: a UUID in URL-safe base64 without padding. Like
// Kafka's own Uuid.randomUuid, it never starts with '-', which the storage tool's argument
// parser would take for an option (it failed one run in 64).
func newClusterID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
