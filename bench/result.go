package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Levels: how much of dwell a run includes.
const (
	// LevelOperators runs decode and sessionize in-process on one goroutine: no Kafka, no
	// state store.
	LevelOperators = "operators"
	// LevelKfake runs the live processor against franz-go's kfake in the same process (the
	// broker shares the cores).
	LevelKfake = "kfake"
	// LevelBroker runs the live processor against the brokers named by DWELL_TEST_BROKERS.
	LevelBroker = "broker"
)

// BrokersEnv names the environment variable holding a real broker's bootstrap addresses
// (comma-separated) for LevelBroker.
const BrokersEnv = "DWELL_TEST_BROKERS"

// Result is what every run reports, as text (Print) and as a JSON result file.
type Result struct {
	Workload string `json:"workload"`
	Level    string `json:"level"`
	// Config is the exact configuration of the run, defaults filled.
	Config any `json:"config"`

	Events     int64   `json:"events"`  // input records processed
	Outputs    int64   `json:"outputs"` // output records (the changelog excluded)
	WallSec    float64 `json:"wall_s"`  // measured stretch only
	CPUSec     float64 `json:"cpu_s"`   // process user+system CPU in that stretch
	EventsPerS float64 `json:"events_per_s"`
	// EventsPerCoreS is events per second of process CPU time: what one fully used core does.
	EventsPerCoreS   float64 `json:"events_per_core_s"`
	CoresUsed        float64 `json:"cores_used"`
	NsPerEvent       float64 `json:"ns_per_event"` // wall
	AllocsPerEvent   float64 `json:"allocs_per_event"`
	BytesInPerEvent  float64 `json:"bytes_in_per_event"`
	BytesOutPerEvent float64 `json:"bytes_out_per_event"`

	// Latency quantiles in seconds, and what they measure (it differs between levels).
	LatencyP50     float64 `json:"latency_p50_s"`
	LatencyP99     float64 `json:"latency_p99_s"`
	LatencyP999    float64 `json:"latency_p999_s"`
	LatencySamples int64   `json:"latency_samples"`
	LatencyMeaning string  `json:"latency_meaning"`

	PeakRSSBytes   int64   `json:"peak_rss_bytes"`
	ActiveSessions int64   `json:"active_sessions"`
	HeapPerSession float64 `json:"heap_bytes_per_active_session"`

	// Extra holds workload-specific figures (system events per event, restore rates, ...).
	Extra map[string]float64 `json:"extra,omitempty"`
	Notes []string           `json:"notes,omitempty"`

	GoVersion  string `json:"go_version"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	NumCPU     int    `json:"num_cpu"`
	Started    string `json:"started"`
}

func (r *Result) finish() {
	if r.WallSec > 0 {
		r.EventsPerS = float64(r.Events) / r.WallSec
		r.CoresUsed = r.CPUSec / r.WallSec
	}
	if r.CPUSec > 0 {
		r.EventsPerCoreS = float64(r.Events) / r.CPUSec
	}
	if r.Events > 0 {
		r.NsPerEvent = r.WallSec * 1e9 / float64(r.Events)
	}
	r.PeakRSSBytes = peakRSS()
	r.GoVersion = runtime.Version()
	r.GOMAXPROCS = runtime.GOMAXPROCS(0)
	r.NumCPU = runtime.NumCPU()
}

// Print writes the result as aligned text.
func (r *Result) Print(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "workload %s, level %s (%s, GOMAXPROCS=%d of %d CPUs)\n", r.Workload, r.Level, r.GoVersion, r.GOMAXPROCS, r.NumCPU)
	cfg, _ := json.Marshal(r.Config)
	fmt.Fprintf(&b, "  config            %s\n", cfg)
	fmt.Fprintf(&b, "  events            %d in %.3fs wall, %.3fs CPU (%.2f cores)\n", r.Events, r.WallSec, r.CPUSec, r.CoresUsed)
	fmt.Fprintf(&b, "  events/s          %s total, %s per core used\n", si(r.EventsPerS), si(r.EventsPerCoreS))
	fmt.Fprintf(&b, "  per event         %.0f ns, %.3f allocs, %.0f B in, %.0f B out (%d outputs)\n",
		r.NsPerEvent, r.AllocsPerEvent, r.BytesInPerEvent, r.BytesOutPerEvent, r.Outputs)
	if r.LatencySamples > 0 {
		fmt.Fprintf(&b, "  latency           p50 %s, p99 %s, p99.9 %s (%d samples): %s\n",
			dur(r.LatencyP50), dur(r.LatencyP99), dur(r.LatencyP999), r.LatencySamples, r.LatencyMeaning)
	} else {
		fmt.Fprintf(&b, "  latency           not measured: %s\n", r.LatencyMeaning)
	}
	fmt.Fprintf(&b, "  memory            peak RSS %.1f MiB", float64(r.PeakRSSBytes)/(1<<20))
	if r.ActiveSessions > 0 {
		fmt.Fprintf(&b, ", %.0f B heap per active session (%d active)", r.HeapPerSession, r.ActiveSessions)
	}
	b.WriteByte('\n')
	for _, k := range sortedKeys(r.Extra) {
		fmt.Fprintf(&b, "  %-17s %.6g\n", k, r.Extra[k])
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the result to path as indented JSON.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func dur(s float64) string { return time.Duration(s * 1e9).Round(time.Microsecond).String() }

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is the process's peak resident set size in bytes (Linux reports kilobytes).
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return int64(ru.Maxrss) * 1024
}

// meter accumulates wall time, CPU time and allocations over measured stretches, so that
// input generation between stretches is left out.
type meter struct {
	wall, cpu time.Duration
	mallocs   uint64
	t0, c0    time.Time
	cpu0      time.Duration
	m0        uint64
	ms        runtime.MemStats
}

func (m *meter) start() {
	runtime.ReadMemStats(&m.ms)
	m.m0 = m.ms.Mallocs
	m.cpu0 = cpuTime()
	m.t0 = time.Now()
}

func (m *meter) stop() {
	m.wall += time.Since(m.t0)
	m.cpu += cpuTime() - m.cpu0
	runtime.ReadMemStats(&m.ms)
	m.mallocs += m.ms.Mallocs - m.m0
}

func (m *meter) into(r *Result) {
	r.WallSec = m.wall.Seconds()
	r.CPUSec = m.cpu.Seconds()
	if r.Events > 0 {
		r.AllocsPerEvent = float64(m.mallocs) / float64(r.Events)
	}
}

// histogram records durations in nanoseconds with about 1.5% resolution (64 sub-buckets per
// power of two) in fixed memory, so recording never allocates.
type histogram struct {
	counts [64 * 64]int64
	n      int64
}

func (h *histogram) record(ns int64) {
	if ns < 1 {
		ns = 1
	}
	h.counts[bucketOf(uint64(ns))]++
	h.n++
}

func bucketOf(v uint64) int {
	e := bits.Len64(v) - 1 // v in [2^e, 2^(e+1))
	if e < 6 {
		return int(v) // exact below 64
	}
	sub := (v >> (e - 6)) & 63
	return (e-5)*64 + int(sub)
}

// lowerBound is the smallest value of bucket i.
func lowerBound(i int) float64 {
	if i < 64 {
		return float64(i)
	}
	e := i/64 + 5
	sub := i % 64
	return math.Ldexp(float64(64+sub), e-6)
}

// quantile returns the q-quantile in nanoseconds (bucket midpoint).
func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank && c > 0 {
			return (lowerBound(i) + lowerBound(i+1)) / 2
		}
	}
	return 0
}

func (h *histogram) into(r *Result) {
	r.LatencySamples = h.n
	r.LatencyP50 = h.quantile(0.5) / 1e9
	r.LatencyP99 = h.quantile(0.99) / 1e9
	r.LatencyP999 = h.quantile(0.999) / 1e9
}
