package deliver

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"
)

// Config is a deliverer's settings. Zero fields take the documented defaults (EnsureDefaults;
// DefaultConfig holds those that do not depend on Queue).
type Config struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// ClientOpts are extra franz-go options (TLS, SASL, a logger).
	ClientOpts []kgo.Opt
	// Queue names the queue: it labels the metrics. Required.
	Queue string
	// Topic is the queue topic. Default "dwell.queue." + Queue.
	Topic string
	// Group is the consumer group. Default "dwell-deliver-" + Queue.
	Group string
	// DeadTopic receives what cannot be delivered. Default "dwell.dlq".
	DeadTopic string
	// Endpoints says where records go. At least one endpoint is required.
	Endpoints Endpoints
	// Concurrency is how many deliveries run at once. Default 8.
	Concurrency int
	// MaxPending pauses a partition with this many records handed out and not yet committed
	// (in flight, or handled behind an unfinished one). Default 1000.
	MaxPending int
	// AttemptTimeout bounds one HTTP request, body included. Default 10s.
	AttemptTimeout time.Duration
	// MaxAttempts bounds the attempts per record. Default 10.
	MaxAttempts int
	// MaxElapsed bounds the time from a record's first attempt to its last. Default 5m.
	MaxElapsed time.Duration
	// InitialBackoff is the wait before the first retry; it doubles per retry. Default 250ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the computed wait (not a Retry-After). Default 30s.
	MaxBackoff time.Duration
	// DrainTimeout bounds how long shutdown and revocation wait for deliveries in flight.
	// Default 20s.
	DrainTimeout time.Duration
	// CommitInterval is how often handled offsets are committed. Default 1s.
	CommitInterval time.Duration
	// HTTPClient sends the requests. Default: a client that follows no redirects. Its Timeout
	// should be zero or above AttemptTimeout, which bounds each attempt.
	HTTPClient *http.Client
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock for latencies and Retry-After dates. Default time.Now.
	Now func() time.Time
	// Metrics may be nil (no metrics).
	Metrics *Metrics
}

// DefaultConfig returns a Config holding the defaults that a flag can bind: all but Topic and
// Group (derived from Queue) and HTTPClient, Logger and Now. cmd/dwell binds its flags to the
// fields, each with the field's value as the flag's default, and EnsureDefaults fills zero
// fields from it, so each default is written once.
func DefaultConfig() Config {
	return Config{
		DeadTopic:      "dwell.dlq",
		Concurrency:    8,
		MaxPending:     1000,
		AttemptTimeout: 10 * time.Second,
		MaxAttempts:    10,
		MaxElapsed:     5 * time.Minute,
		InitialBackoff: 250 * time.Millisecond,
		MaxBackoff:     30 * time.Second,
		DrainTimeout:   20 * time.Second,
		CommitInterval: time.Second,
	}
}

// EnsureDefaults fills the zero fields: from DefaultConfig, Topic and Group from Queue, and
// HTTPClient, Logger and Now.
func (c *Config) EnsureDefaults() {
	d := DefaultConfig()
	if c.Topic == "" && c.Queue != "" {
		c.Topic = "dwell.queue." + c.Queue
	}
	if c.Group == "" && c.Queue != "" {
		c.Group = "dwell-deliver-" + c.Queue
	}
	if c.DeadTopic == "" {
		c.DeadTopic = d.DeadTopic
	}
	def := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.MaxPending == 0 {
		c.MaxPending = d.MaxPending
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	def(&c.AttemptTimeout, d.AttemptTimeout)
	def(&c.MaxElapsed, d.MaxElapsed)
	def(&c.InitialBackoff, d.InitialBackoff)
	def(&c.MaxBackoff, d.MaxBackoff)
	def(&c.DrainTimeout, d.DrainTimeout)
	def(&c.CommitInterval, d.CommitInterval)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports settings that cannot work; call it after EnsureDefaults.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("deliver: no brokers"))
	}
	if c.Queue == "" {
		errs = append(errs, errors.New("deliver: no queue name"))
	}
	if c.Topic == c.DeadTopic {
		errs = append(errs, fmt.Errorf("deliver: the queue topic and the dead-letter topic are both %q", c.Topic))
	}
	if c.Endpoints.Default == nil && len(c.Endpoints.Channels) == 0 {
		errs = append(errs, errors.New("deliver: no endpoint: give a default URL or an endpoints file"))
	}
	if c.Concurrency < 1 || c.MaxPending < 1 || c.MaxAttempts < 1 {
		errs = append(errs, errors.New("deliver: concurrency, max pending and max attempts must be at least 1"))
	}
	for _, d := range []time.Duration{c.AttemptTimeout, c.MaxElapsed, c.InitialBackoff, c.MaxBackoff, c.DrainTimeout, c.CommitInterval} {
		if d < 0 {
			errs = append(errs, errors.New("deliver: durations must not be negative"))
			break
		}
	}
	return errors.Join(errs...)
}

// Endpoint is where a record is POSTed.
type Endpoint struct {
	URL string
	// Headers are added to every request (an Authorization, say).
	Headers map[string]string
}

// Endpoints maps a record to its endpoint: by the value's "channel" field, else Default.
type Endpoints struct {
	Default  *Endpoint
	Channels map[string]Endpoint
}

// For returns the endpoint of a record whose channel is ch ("" for none).
func (e *Endpoints) For(ch string) *Endpoint {
	if ep, ok := e.Channels[ch]; ok && ch != "" {
		return &ep
	}
	return e.Default
}

// ParseEndpoints reads an endpoints file:
//
//	default: https://hooks.example.com/dwell          # records without a listed channel
//	channels:
//	  slack: https://hooks.slack.com/services/T0/B0/X
//	  email:
//	    url: https://mailer.internal/send
//	    headers: {Authorization: "Bearer ${MAILER_TOKEN}"}
//
// An endpoint is a URL or {url, headers}. ${VAR} in URLs and header values is replaced by
// getenv(VAR), so secrets can stay out of the file. Unknown keys are errors.
func ParseEndpoints(b []byte, getenv func(string) string) (Endpoints, error) {
	var doc struct {
		Default  *yamlEndpoint           `yaml:"default"`
		Channels map[string]yamlEndpoint `yaml:"channels"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return Endpoints{}, fmt.Errorf("deliver: endpoints: %w", err)
	}
	var e Endpoints
	expand := func(s string) string { return expandEnv(s, getenv) }
	conv := func(name string, y yamlEndpoint) (Endpoint, error) {
		ep := Endpoint{URL: expand(y.URL)}
		if err := checkURL(ep.URL); err != nil {
			return ep, fmt.Errorf("deliver: endpoints: %s: %w", name, err)
		}
		if len(y.Headers) > 0 {
			ep.Headers = make(map[string]string, len(y.Headers))
			for k, v := range y.Headers {
				ep.Headers[k] = expand(v)
			}
		}
		return ep, nil
	}
	if doc.Default != nil {
		ep, err := conv("default", *doc.Default)
		if err != nil {
			return e, err
		}
		e.Default = &ep
	}
	names := make([]string, 0, len(doc.Channels))
	for n := range doc.Channels {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		ep, err := conv("channels."+n, doc.Channels[n])
		if err != nil {
			return e, err
		}
		if e.Channels == nil {
			e.Channels = map[string]Endpoint{}
		}
		e.Channels[n] = ep
	}
	if e.Default == nil && len(e.Channels) == 0 {
		return e, errors.New("deliver: endpoints: the file names no endpoint (default or channels)")
	}
	return e, nil
}

// CheckURL reports whether s is an absolute http or https URL.
func CheckURL(s string) error { return checkURL(s) }

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

func expandEnv(s string, getenv func(string) string) string {
	if getenv == nil || !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			break
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			break
		}
		b.WriteString(s[:i])
		b.WriteString(getenv(s[i+2 : i+j]))
		s = s[i+j+1:]
	}
	b.WriteString(s)
	return b.String()
}

// yamlEndpoint is an endpoint in the file: a URL, or {url, headers}.
type yamlEndpoint struct {
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
}

func (y *yamlEndpoint) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&y.URL)
	}
	type plain yamlEndpoint
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*y = yamlEndpoint(p)
	return nil
}
