package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dwellhq/dwell/pipeline/collect"
)

// demoShopSource is the event source of the demo's shop page (its tracker's data-source).
const demoShopSource = "demo-shop"

// demoShop is dwell demo's shop: the shop page at / and a collector for everything else
// (/track, /tracker.js, /healthz, /readyz), producing to the demo's input topic with the
// demo's event-time clock.
type demoShop struct {
	url  string // http://HOST:PORT/
	srv  *http.Server
	c    *collect.Collector
	stop context.CancelFunc
	wg   sync.WaitGroup
	once sync.Once
	err  error // Close's
}

// startShop listens on addr and serves the shop; now stamps the browser's records, so that they
// share the event clock of the generator and the processor (with the wall clock they would be
// hours behind the watermark of an accelerated demo, and late).
// Its dwell_collect_* series go to reg (the processor's client has the dwell_kafka_* ones).
func startShop(addr string, brokers []string, topic string, now func() time.Time, logger *slog.Logger, reg prometheus.Registerer) (*demoShop, error) {
	ss, err := collect.ParseSources([]byte("sources:\n  - id: "+demoShopSource+"\n    origins: [\"*\"]\n"), nil)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("shop: listening on %s: %w; pass another --shop-addr", addr, err)
	}
	c, err := collect.New(collect.Config{Brokers: brokers, Topic: topic, Sources: ss, Now: now,
		PingInterval: time.Second, Logger: logger, Metrics: collect.NewMetrics(reg, collect.WithoutKafkaClient())})
	if err != nil {
		ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { // any query: the shop's pages
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(collect.ShopHTML())
	})
	mux.Handle("/", c.Handler())
	s := &demoShop{url: shopURL(addr, ln.Addr()), c: c,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_ = c.Run(ctx)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("shop server", "err", err)
		}
	}()
	return s, nil
}

// shopURL is the URL to print: the host as given (localhost stays localhost), the port bound.
func shopURL(addr string, bound net.Addr) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	_, port, _ := net.SplitHostPort(bound.String())
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// Close stops serving (requests in flight are answered, for at most 5s), then stops the
// collector's pings and flushes its producer. Idempotent; nil does nothing.
func (s *demoShop) Close() error {
	if s == nil {
		return nil
	}
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		s.stop()
		s.wg.Wait()
		s.err = errors.Join(err, s.c.Close(ctx))
	})
	return s.err
}

// browserLine is the summary's line for a system event of the shop's visitors, or "" for one of
// no interest (only visit-started and visit-ended are shown: one line each per visit).
func browserLine(value []byte) string {
	var ev struct {
		Type       string `json:"type"`
		Time       string `json:"time"`
		Profile    string `json:"profile"`
		Source     string `json:"source"`
		Properties struct {
			Reason        string `json:"reason"`
			DurationMS    int64  `json:"duration_ms"`
			EventCount    int64  `json:"event_count"`
			PageViewCount int64  `json:"page_view_count"`
			EntryURL      string `json:"entry_url"`
			ExitURL       string `json:"exit_url"`
		} `json:"properties"`
	}
	if json.Unmarshal(value, &ev) != nil || ev.Source != demoShopSource {
		return ""
	}
	who := "your browser (profile " + shortID(ev.Profile) + ")"
	p := ev.Properties
	switch ev.Type {
	case "visit-started":
		return fmt.Sprintf("%s: visit-started at %s (event time), entry %s", who, clockTime(ev.Time), pagePath(p.EntryURL))
	case "visit-ended":
		return fmt.Sprintf("%s: visit-ended (%s): %d events, %d page views, %s (event time), exit %s",
			who, p.Reason, p.EventCount, p.PageViewCount, (time.Duration(p.DurationMS) * time.Millisecond).Round(time.Second), pagePath(p.ExitURL))
	}
	return ""
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
}

// clockTime is an RFC 3339 time's time of day, in UTC as written.
func clockTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("15:04:05 UTC")
}

// pagePath is a URL's path and query: the shop's pages differ by their query only.
func pagePath(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Path == "" && u.RawQuery == "" {
		return s
	}
	if u.RawQuery != "" {
		return u.Path + "?" + u.RawQuery
	}
	return u.Path
}
