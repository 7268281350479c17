package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newRegistry is the process's metrics registry (no globals): Go runtime and process series,
// dwell_build_info, plus whatever the pipeline registers.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfoGauge(readBuildInfo()))
	return reg
}

// serveHTTP serves /metrics, /healthz (the process is up) and /readyz (200 while ready()
// returns nil, else 503 with its text) on addr until the returned stop is called; it returns
// the address it listens on.
func serveHTTP(addr string, reg *prometheus.Registry, ready func() error, log *slog.Logger) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("metrics: listening on %s: %w; pass another --metrics-addr", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
	log.Info("serving metrics", "addr", ln.Addr().String())
	return ln.Addr().String(), stop, nil
}

// readyErr adapts a readiness flag to serveHTTP.
func readyErr(ready func() bool) func() error {
	return func() error {
		if !ready() {
			return errors.New("not ready: partitions are being assigned or none is assigned yet")
		}
		return nil
	}
}
