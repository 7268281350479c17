package collect

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/time/rate"
)

// Source is one event source, as Tracardi has them: the `source.id` a /track request names,
// where browsers may send it from, an optional API key and a rate limit.
type Source struct {
	// ID is the source.id requests carry. Required, unique, at most 512 bytes.
	ID string `yaml:"id"`
	// Name is for people (logs, dwell collect --list-sources).
	Name string `yaml:"name"`
	// Enabled: a disabled source's requests get 403 "source disabled". Default true.
	Enabled *bool `yaml:"enabled"`
	// Origins are the browser origins allowed to send as this source: "https://shop.example.com"
	// (scheme, host and port as the browser sends them in Origin), "https://*.example.com" (any
	// subdomain, not the apex), or "*" (any). A request without an Origin header (a server, curl)
	// is not a browser's and is not checked against them. Empty: browsers may not use the source.
	Origins []string `yaml:"origins"`
	// APIKey, or APIKeyEnv naming an environment variable that holds it: when set, a request must
	// carry it (Authorization: Bearer KEY, X-Api-Key: KEY, or ?key=KEY for a beacon).
	APIKey    string `yaml:"api_key"`
	APIKeyEnv string `yaml:"api_key_env"`
	// Rate limits the events this source may send per second, across the instance (0: no
	// limit); Burst is how many may come at once (default: one second's worth, at least 100,
	// the default --max-events). A request of more events than Burst is refused as
	// too-many-events: it could never pass.
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// defaultBurst is the least default burst: a request of the default --max-events passes.
const defaultBurst = 100

// sourceKeys are the keys of a source, for errors.
const sourceKeys = "id, name, enabled, origins, api_key, api_key_env, rate, burst"

// SourcesFile is the sources file: `sources:` a list of Source.
type SourcesFile struct {
	Sources []Source `yaml:"sources"`
}

// Sources is a validated set of sources, looked up by id. It is immutable; a reload makes a
// new one (Collector.SetSources), keeping the rate limiters of sources whose limit is unchanged.
type Sources struct {
	byID    map[string]*source
	anyWeb  bool     // some enabled source allows "*"
	origins []origin // of enabled sources, for preflights
	sum     [32]byte // of the file's content, to skip reloads that change nothing
	ids     []string // in file order
}

type source struct {
	Source
	enabled bool
	key     []byte // the API key, or nil
	origins []origin
	lim     *rate.Limiter // nil: no limit
}

// origin is an allowed origin: scheme and host[:port], host possibly "*.domain".
type origin struct {
	any          bool
	scheme, host string // lower case; host "*.example.com" for a wildcard
}

func (o origin) match(scheme, host string) bool {
	if o.any {
		return true
	}
	if o.scheme != scheme {
		return false
	}
	if rest, ok := strings.CutPrefix(o.host, "*."); ok {
		return strings.HasSuffix(host, "."+rest) && len(host) > len(rest)+1
	}
	return o.host == host
}

// parseOrigin reads an allowed origin of a sources file.
func parseOrigin(s string) (origin, error) {
	if s == "*" {
		return origin{any: true}, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return origin{}, fmt.Errorf("origin %q: want scheme://host[:port], such as https://shop.example.com or https://*.example.com, or *", s)
	}
	host := strings.ToLower(u.Host)
	if strings.Contains(strings.TrimPrefix(host, "*."), "*") {
		return origin{}, fmt.Errorf("origin %q: a wildcard may only stand for the leftmost labels (https://*.example.com)", s)
	}
	return origin{scheme: strings.ToLower(u.Scheme), host: host}, nil
}

// splitOrigin splits an Origin header into scheme and host; ok is false for "null" and
// anything that is not an origin.
func splitOrigin(h string) (scheme, host string, ok bool) {
	scheme, host, ok = strings.Cut(h, "://")
	if !ok || host == "" || strings.ContainsAny(host, "/?#@ ") {
		return "", "", false
	}
	return strings.ToLower(scheme), strings.ToLower(host), true
}

// allowsOrigin says whether a browser at the Origin header h may send as s.
func (s *source) allowsOrigin(scheme, host string) bool {
	for _, o := range s.origins {
		if o.match(scheme, host) {
			return true
		}
	}
	return false
}

// checkKey says whether the request's key is the source's (in constant time).
func (s *source) checkKey(got string) bool {
	if s.key == nil {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(got), s.key) == 1
}

// ParseSources reads a sources file. Errors name the source (by its position and id) and the
// line; getenv resolves api_key_env (os.Getenv when nil).
func ParseSources(data []byte, getenv func(string) string) (*Sources, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var f SourcesFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("sources: empty file; want a sources: list")
		}
		return nil, fmt.Errorf("sources: %w (a file is `sources:` and a list of {%s})", err, sourceKeys)
	}
	if len(f.Sources) == 0 {
		return nil, errors.New("sources: no sources listed; want a sources: list of {id, origins, ...}")
	}
	ss := &Sources{byID: make(map[string]*source, len(f.Sources)), sum: sha256.Sum256(data)}
	for i, s := range f.Sources {
		where := fmt.Sprintf("sources[%d]", i)
		if s.ID != "" {
			where += fmt.Sprintf(" (id %q)", s.ID)
		}
		c, err := compileSource(s, getenv)
		if err != nil {
			return nil, fmt.Errorf("sources: %s: %w", where, err)
		}
		if _, dup := ss.byID[s.ID]; dup {
			return nil, fmt.Errorf("sources: %s: the id is listed twice", where)
		}
		ss.byID[s.ID] = c
		ss.ids = append(ss.ids, s.ID)
		if c.enabled {
			for _, o := range c.origins {
				ss.anyWeb = ss.anyWeb || o.any
				ss.origins = append(ss.origins, o)
			}
		}
	}
	return ss, nil
}

func compileSource(s Source, getenv func(string) string) (*source, error) {
	if s.ID == "" {
		return nil, errors.New("id is empty")
	}
	if len(s.ID) > 512 {
		return nil, errors.New("id is over 512 bytes")
	}
	c := &source{Source: s, enabled: s.Enabled == nil || *s.Enabled}
	for _, o := range s.Origins {
		po, err := parseOrigin(o)
		if err != nil {
			return nil, err
		}
		c.origins = append(c.origins, po)
	}
	switch {
	case s.APIKey != "" && s.APIKeyEnv != "":
		return nil, errors.New("give api_key or api_key_env, not both")
	case s.APIKey != "":
		c.key = []byte(s.APIKey)
	case s.APIKeyEnv != "":
		v := getenv(s.APIKeyEnv)
		if v == "" && !c.enabled {
			c.key = []byte{} // disabled: refused before its key matters
			break
		}
		if v == "" {
			return nil, fmt.Errorf("api_key_env: the environment variable %s is empty or unset; set it to the source's key", s.APIKeyEnv)
		}
		c.key = []byte(v)
	}
	if s.Rate < 0 || s.Burst < 0 {
		return nil, errors.New("rate and burst must not be negative")
	}
	if s.Rate > 0 {
		burst := s.Burst
		if burst == 0 {
			burst = max(int(s.Rate), defaultBurst)
		}
		c.lim = rate.NewLimiter(rate.Limit(s.Rate), burst)
	}
	return c, nil
}

// keepLimiters carries the limiters (their tokens) of old's sources over to the same sources
// in ss whose rate and burst are unchanged, so a reload does not refill every bucket.
func (ss *Sources) keepLimiters(old *Sources) {
	if old == nil {
		return
	}
	for id, s := range ss.byID {
		if o, ok := old.byID[id]; ok && o.lim != nil && s.lim != nil && o.Rate == s.Rate && o.Burst == s.Burst {
			s.lim = o.lim
		}
	}
}

// IDs returns the source ids in file order.
func (ss *Sources) IDs() []string { return append([]string(nil), ss.ids...) }

// preflightAllowed says whether an enabled source allows the origin: a preflight carries no
// body, so it cannot say which source the request will name.
func (ss *Sources) preflightAllowed(scheme, host string) bool {
	if ss.anyWeb {
		return true
	}
	for _, o := range ss.origins {
		if o.match(scheme, host) {
			return true
		}
	}
	return false
}

// retryAfter is how long a request of n events should wait for s's limiter, rounded up to a
// second (Retry-After's unit), at least one.
func (s *source) retryAfter(n int, now time.Time) int {
	r := s.lim.ReserveN(now, n)
	if !r.OK() {
		return 1
	}
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return max(1, int((d+time.Second-1)/time.Second))
}
