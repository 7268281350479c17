package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dwellhq/dwell/pipeline"
)

// The wire contract: headers and error codes, declared once.
const (
	// HeaderServedBy names the instance that answered (its advertised URL, or "local").
	HeaderServedBy = "X-Dwell-Served-By"
	// HeaderForwarded marks a request one instance forwarded to another, with the forwarder's
	// URL: it is answered locally or refused, never forwarded again.
	HeaderForwarded = "X-Dwell-Forwarded-By"

	CodeUnauthorized = "unauthorized"
	CodeBadRequest   = "bad_request"
	CodeNotFound     = "not_found"
	CodeRestoring    = "restoring"
	CodeNotOwner     = "not_owner"
	CodeNoOwner      = "no_owner"
	CodeForward      = "forward_failed"
	CodeInternal     = "internal"
)

// Backend answers queries of the live state: *pipeline.Live.
type Backend interface {
	Profile(ctx context.Context, id string) (pipeline.ProfileView, error)
	Partitions(ctx context.Context) (pipeline.PartitionsView, error)
	RuleSetVersion() string
}

// Locator says which admin URL owns each partition: *pipeline.Live (PartitionOwners).
type Locator interface {
	PartitionOwners(ctx context.Context) (map[int32]string, error)
}

var (
	_ Backend = (*pipeline.Live)(nil)
	_ Locator = (*pipeline.Live)(nil)
)

// Config configures the admin server. Zero fields take the defaults given.
type Config struct {
	// Addr is the address to listen on (--admin-addr). Default 127.0.0.1:8787: loopback only.
	Addr string
	// Listener, if set, is used instead of listening on Addr (tests, socket activation).
	Listener net.Listener
	// Token is the bearer token every request must carry. Required.
	Token string
	// AdvertisedURL is this instance's admin URL as the others reach it (--admin-advertise);
	// it must be the LiveConfig.AdvertisedAdminURL of the same instance. Default none: this
	// instance forwards, but cannot tell its own URL from a stale owner's.
	AdvertisedURL string
	// Pprof serves /debug/pprof/ (behind the token too). Default off.
	Pprof bool
	// Logger. Default: discard.
	Logger *slog.Logger
	// Registry receives dwell_admin_requests_total{route,code} and
	// dwell_admin_request_duration_seconds{route}. Default none.
	Registry prometheus.Registerer
	// Owners finds partition owners for forwarding. Default none: a profile owned by another
	// instance answers 421 not_owner.
	Owners Locator
	// OwnersMaxAge is how old the cached owners may be before a lookup reads them again.
	// Default 30s.
	OwnersMaxAge time.Duration
	// ForwardTimeout bounds a forwarded request. Default 5s.
	ForwardTimeout time.Duration
	// Transport carries forwarded requests. Default: a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// Now is the clock of the owners' cache. Default time.Now.
	Now func() time.Time
}

// DefaultAddr is Config.Addr's default.
const DefaultAddr = "127.0.0.1:8787"

func (c *Config) ensureDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.OwnersMaxAge == 0 {
		c.OwnersMaxAge = 30 * time.Second
	}
	if c.ForwardTimeout == 0 {
		c.ForwardTimeout = 5 * time.Second
	}
	if c.Transport == nil {
		c.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.AdvertisedURL = strings.TrimSuffix(c.AdvertisedURL, "/")
}

func (c *Config) validate() error {
	if c.Token == "" {
		return errors.New("admin: no token; set DWELL_ADMIN_TOKEN or --admin-token-file")
	}
	if u := c.AdvertisedURL; u != "" {
		if p, err := url.Parse(u); err != nil || p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
			return fmt.Errorf("admin: advertised URL %q is not an http(s)://host:port URL (--admin-advertise)", u)
		}
	}
	return nil
}

// Server is the admin API server. Run serves until its context ends.
type Server struct {
	cfg     Config
	b       Backend
	log     *slog.Logger
	token   [32]byte // sha256 of the token: compared in constant time, whatever its length
	handler http.Handler
	owners  *owners
	fwd     *http.Client
	metrics *metrics
}

// New returns a server answering from b. It listens only when Run starts.
func New(cfg Config, b Backend) (*Server, error) {
	cfg.ensureDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, b: b, log: cfg.Logger, token: sha256.Sum256([]byte(cfg.Token))}
	if cfg.Owners != nil {
		s.owners = &owners{loc: cfg.Owners, maxAge: cfg.OwnersMaxAge, now: cfg.Now}
	}
	s.fwd = &http.Client{Transport: cfg.Transport, Timeout: cfg.ForwardTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if cfg.Registry != nil {
		m, err := newMetrics(cfg.Registry)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/profiles/{id}", s.profile)
	mux.HandleFunc("GET /v1/partitions", s.partitions)
	mux.HandleFunc("GET /v1/rules", s.rules)
	if cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, apiError{Code: CodeNotFound, Error: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})
	s.handler = s.instrument(s.authorize(mux), mux)
	return s, nil
}

// Handler is the server's handler, authorization and metrics included (tests, benchmarks).
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens (on Config.Listener, or Config.Addr) and serves until ctx ends, then shuts down
// gracefully: requests in flight get up to 5 seconds to finish. It returns nil after a
// shutdown, or the error that stopped serving.
func (s *Server) Run(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("admin: listening on %s (--admin-addr): %w", s.cfg.Addr, err)
		}
	}
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute,
		// Requests in flight outlive ctx for the shutdown's grace period.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.log.Info("admin API listening", "addr", ln.Addr().String(), "advertised", s.cfg.AdvertisedURL, "pprof", s.cfg.Pprof)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("admin: serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("admin: shutting down: %w", err), srv.Close())
	}
	<-served // http.ErrServerClosed
	if t, ok := s.cfg.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return err
}

// authorize refuses requests without the bearer token.
func (s *Server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dwell"`)
			msg := "missing bearer token: send Authorization: Bearer <token>"
			if ok {
				msg = "wrong bearer token"
			}
			writeError(w, http.StatusUnauthorized, apiError{Code: CodeUnauthorized, Error: msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ProfileResponse is GET /v1/profiles/{id}'s answer.
type ProfileResponse struct {
	pipeline.ProfileView
	// ServedBy is the instance that answered (its advertised URL, or "local"); Forwarded says
	// the instance asked forwarded the request to it.
	ServedBy  string `json:"served_by"`
	Forwarded bool   `json:"forwarded"`
}

// PartitionsResponse is GET /v1/partitions' answer.
type PartitionsResponse struct {
	pipeline.PartitionsView
	ServedBy string `json:"served_by"`
}

// RulesResponse is GET /v1/rules' answer.
type RulesResponse struct {
	Version  string `json:"version"`
	ServedBy string `json:"served_by"`
}

// apiError is every error's body.
type apiError struct {
	Error     string `json:"error"`
	Code      string `json:"code"`
	Partition *int32 `json:"partition,omitempty"`
	Instance  string `json:"instance,omitempty"` // the instance a forward failed at
}

// maxIDBytes bounds a profile id.
const maxIDBytes = 1024

func (s *Server) self() string {
	if s.cfg.AdvertisedURL != "" {
		return s.cfg.AdvertisedURL
	}
	return "local"
}

func (s *Server) profile(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxIDBytes || !utf8.ValidString(id) || strings.ContainsFunc(id, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		writeError(w, http.StatusBadRequest, apiError{Code: CodeBadRequest,
			Error: fmt.Sprintf("bad profile id: want 1 to %d bytes of UTF-8 without control characters", maxIDBytes)})
		return
	}
	forwardedBy := r.Header.Get(HeaderForwarded)
	v, err := s.b.Profile(r.Context(), id)
	var notOwner pipeline.ErrNotOwner
	switch {
	case err == nil:
		w.Header().Set(HeaderServedBy, s.self())
		writeJSON(w, http.StatusOK, ProfileResponse{ProfileView: v, ServedBy: s.self(), Forwarded: forwardedBy != ""})
	case errors.As(err, &notOwner) && forwardedBy == "" && s.owners != nil:
		s.forward(w, r, notOwner.Partition)
	default:
		s.writeBackendError(w, err, id)
	}
}

func (s *Server) writeBackendError(w http.ResponseWriter, err error, id string) {
	var (
		notOwner  pipeline.ErrNotOwner
		restoring pipeline.ErrRestoring
	)
	switch {
	case errors.Is(err, pipeline.ErrUnknownProfile):
		writeError(w, http.StatusNotFound, apiError{Code: CodeNotFound,
			Error: fmt.Sprintf("profile %q is unknown: no event of it has been processed, or it was forgotten (profile_ttl)", id)})
	case errors.As(err, &restoring):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, apiError{Code: CodeRestoring, Partition: &restoring.Partition,
			Error: fmt.Sprintf("partition %d is restoring its state; retry shortly", restoring.Partition)})
	case errors.As(err, &notOwner):
		// Forwarded here, yet not the owner: the forwarder's view of the group is stale.
		writeError(w, http.StatusMisdirectedRequest, apiError{Code: CodeNotOwner, Partition: &notOwner.Partition, Instance: s.self(),
			Error: fmt.Sprintf("partition %d is not owned by this instance (%s)", notOwner.Partition, s.self())})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, apiError{Code: CodeInternal, Error: err.Error()})
	default:
		s.log.Warn("admin query failed", "err", err)
		writeError(w, http.StatusInternalServerError, apiError{Code: CodeInternal, Error: err.Error()})
	}
}

func (s *Server) partitions(w http.ResponseWriter, r *http.Request) {
	v, err := s.b.Partitions(r.Context())
	if err != nil {
		s.writeBackendError(w, err, "")
		return
	}
	w.Header().Set(HeaderServedBy, s.self())
	writeJSON(w, http.StatusOK, PartitionsResponse{PartitionsView: v, ServedBy: s.self()})
}

func (s *Server) rules(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set(HeaderServedBy, s.self())
	writeJSON(w, http.StatusOK, RulesResponse{Version: s.b.RuleSetVersion(), ServedBy: s.self()})
}

// forward answers r, for a profile of partition p that another instance owns, with that
// instance's answer. An owner that answers not_owner (a rebalance since the owners were read)
// makes the owners be read again and the request go to the new owner, once.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, p int32) {
	tried := ""
	for attempt := range 2 {
		owner, err := s.owners.lookup(r.Context(), p, attempt > 0, s.cfg.AdvertisedURL)
		if err != nil {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, apiError{Code: CodeNoOwner, Partition: &p,
				Error: fmt.Sprintf("finding the owner of partition %d: %v", p, err)})
			return
		}
		if owner == "" || owner == s.cfg.AdvertisedURL || owner == tried {
			break
		}
		tried = owner
		resp, err := s.forwardTo(r, owner)
		if err != nil {
			writeError(w, http.StatusBadGateway, apiError{Code: CodeForward, Partition: &p, Instance: owner,
				Error: fmt.Sprintf("forwarding to %s, the owner of partition %d: %v", owner, p, err)})
			return
		}
		if resp.StatusCode == http.StatusMisdirectedRequest && attempt == 0 {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			continue // the owner moved: read the owners again
		}
		defer resp.Body.Close()
		for _, h := range []string{"Content-Type", "Retry-After", "WWW-Authenticate", HeaderServedBy} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		if _, err := io.Copy(w, resp.Body); err != nil {
			s.log.Debug("copying a forwarded answer", "owner", owner, "err", err)
		}
		return
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, apiError{Code: CodeNoOwner, Partition: &p,
		Error: fmt.Sprintf("no other instance advertises partition %d (a rebalance in progress, or its owner has no --admin-advertise); retry shortly", p)})
}

// forwardTo sends r to the instance at base with the caller's token.
func (s *Server) forwardTo(r *http.Request, base string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, base+r.URL.EscapedPath(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	req.Header.Set(HeaderForwarded, s.self())
	req.Header.Set("Accept", "application/json")
	return s.fwd.Do(req)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, e apiError) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, e)
}

// retryAfter parses a Retry-After header in seconds (0: none).
func retryAfter(h string) time.Duration {
	n, err := strconv.Atoi(h)
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}
