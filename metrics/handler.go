package metrics

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/pgbridge/pgbridge/internal/stats"
)

// DefaultReadyTimeout bounds one readiness probe when Options.ReadyTimeout
// is zero.
const DefaultReadyTimeout = 2 * time.Second

// Options configures a Handler.
type Options struct {
	// Source returns the router's state at this instant. It is called once
	// per scrape and once per /readyz request, possibly concurrently. The
	// snapshot it returns belongs to the caller. Required.
	Source func() stats.Snapshot

	// TenantLabels true gives every configured tenant its own series;
	// false folds all tenants into one series with tenant="" (the
	// metrics.tenant_labels setting).
	TenantLabels bool

	// Ready reports whether the router can route: nil when it can, an
	// error saying why not otherwise. It must return when ctx is done.
	// Concurrent /readyz requests share one call. Nil means ready whenever
	// the snapshot is not draining.
	Ready func(ctx context.Context) error

	// ReadyTimeout bounds one Ready call; zero means DefaultReadyTimeout.
	// Keep it below the probe timeout of the orchestrator.
	ReadyTimeout time.Duration

	// Version is the pgbridge version for pgbridge_build_info; empty means
	// the main module's version from the build information, or "unknown".
	Version string

	// Logger receives scrape errors and readiness changes; nil means none.
	Logger *zap.Logger
}

// Handler serves /metrics, /healthz and /readyz. Create it with New.
type Handler struct {
	mux      *http.ServeMux
	registry *prometheus.Registry
	source   func() stats.Snapshot
	ready    *readiness
}

// New builds a Handler with its own registry holding the snapshot
// collector and the Go runtime and process collectors. It panics if
// o.Source is nil.
func New(o Options) *Handler {
	if o.Source == nil {
		panic("metrics.New: Options.Source is nil")
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	version := o.Version
	if version == "" {
		version = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			version = bi.Main.Version
		}
	}
	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCollector(o.Source, o.TenantLabels, version),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	h := &Handler{
		mux:      http.NewServeMux(),
		registry: reg,
		source:   o.Source,
		ready:    newReadiness(o.Ready, timeout, log),
	}
	exposition := promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            zapErrorLog{log},
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            reg,
		MaxRequestsInFlight: 4,
		EnableOpenMetrics:   true,
	}))
	h.mux.Handle("GET /metrics", exposition)
	h.mux.HandleFunc("GET /healthz", h.healthz)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("GET /{$}", index)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// Registry is the Handler's private registry, for the few metrics that do
// not come from a stats.Snapshot (and for tests that gather directly).
func (h *Handler) Registry() *prometheus.Registry {
	return h.registry
}

// healthz answers 200 for as long as the process serves HTTP.
func (h *Handler) healthz(w http.ResponseWriter, _ *http.Request) {
	plain(w, http.StatusOK, "ok")
}

// readyz answers 200 when the router is ready to route, else 503 with the
// reason.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.source().Draining {
		h.ready.note(errDraining)
		plain(w, http.StatusServiceUnavailable, errDraining.Error())
		return
	}
	if err := h.ready.check(r.Context()); err != nil {
		plain(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	plain(w, http.StatusOK, "ready")
}

func index(w http.ResponseWriter, _ *http.Request) {
	plain(w, http.StatusOK, "pgbridge admin: /metrics /healthz /readyz")
}

func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, body)
}

// zapErrorLog lets promhttp report gather and encoding errors through zap.
type zapErrorLog struct{ l *zap.Logger }

func (z zapErrorLog) Println(v ...any) {
	z.l.Warn("metrics exposition error", zap.String("error", fmt.Sprint(v...)))
}
