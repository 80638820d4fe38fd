package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/pgbridge/pgbridge/internal/stats"
	"github.com/pgbridge/pgbridge/metrics"
	"github.com/pgbridge/pgbridge/pool"
	"github.com/pgbridge/pgbridge/proxy"
	"github.com/pgbridge/pgbridge/routing"
)

// app is one running router: the pool, the proxy, the admin HTTP server,
// and the configuration file they were built from.
type app struct {
	path  string
	log   *zap.Logger
	level zap.AtomicLevel
	pool  *pool.Manager
	srv   *proxy.Server

	mu          sync.Mutex // serialises reloads
	cfg         *routing.Config
	fileSum     [32]byte // of the file last loaded (or last refused)
	reloadOK    bool
	reloadAt    time.Time // last successful load
	reloadCount int
}

// watchInterval is how often the configuration file is checked for changes.
const watchInterval = time.Second

func serve(path string, stderr io.Writer) int {
	data, err := os.ReadFile(path)
	var cfg *routing.Config
	if err == nil {
		cfg, err = routing.Load(path)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", path, err)
		return 1
	}
	log, level, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pgbridge: logger: %v\n", err)
		return 1
	}
	defer func() { _ = log.Sync() }()

	a := &app{path: path, log: log, level: level, cfg: cfg, fileSum: sha256.Sum256(data), reloadOK: true, reloadAt: time.Now()}
	a.pool = pool.New(cfg, pool.WithLogger(log.Named("pool")))
	defer a.pool.Close()
	a.srv, err = proxy.New(cfg, a.pool, proxy.WithLogger(log.Named("proxy")), proxy.WithReloader(a.reload))
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	ln, err := net.Listen("tcp", cfg.Listen.Address)
	if err != nil {
		log.Error("cannot listen", zap.String("address", cfg.Listen.Address), zap.Error(err))
		return 1
	}

	// The admin HTTP server outlives the drain: /readyz says "draining"
	// and /metrics can be scraped while sessions end.
	httpCtx, httpStop := context.WithCancel(context.Background())
	defer httpStop()
	httpDone := make(chan error, 1)
	if addr := cfg.Admin.Address; addr != "" {
		hl, err := net.Listen("tcp", addr)
		if err != nil {
			_ = ln.Close()
			log.Error("cannot listen for the admin HTTP endpoints", zap.String("address", addr), zap.Error(err))
			return 1
		}
		h := metrics.New(metrics.Options{Source: a.snapshot, TenantLabels: cfg.Metrics.TenantLabels, Ready: a.ready, Logger: log.Named("metrics")})
		ms := &metrics.Server{Handler: h, Logger: log.Named("http")}
		go func() { httpDone <- ms.Serve(httpCtx, hl) }()
		log.Info("admin HTTP endpoints listening", zap.String("address", hl.Addr().String()))
	} else {
		httpDone <- nil
	}
	defer func() {
		httpStop()
		if err := <-httpDone; err != nil {
			log.Warn("admin HTTP server", zap.Error(err))
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go a.handleSignals(sigs, cancel)
	go a.watch(ctx)

	log.Info("pgbridge listening", zap.String("address", ln.Addr().String()), zap.Int("tenants", len(cfg.Tenants)),
		zap.String("backend", net.JoinHostPort(cfg.Backend.Host, strconv.Itoa(cfg.Backend.Port))))
	if err := a.srv.Serve(ctx, ln); err != nil {
		log.Error("serve failed", zap.Error(err))
		return 1
	}
	log.Info("pgbridge stopped")
	return 0
}

// handleSignals: SIGHUP reloads; the first SIGINT/SIGTERM drains, a
// second one exits at once.
func (a *app) handleSignals(sigs <-chan os.Signal, drain context.CancelFunc) {
	stopping := false
	for sig := range sigs {
		switch {
		case sig == syscall.SIGHUP:
			if err := a.reload(); err != nil {
				a.log.Error("reload on SIGHUP failed; the previous configuration stays", zap.Error(err))
			}
		case stopping:
			a.log.Warn("second signal: exiting now", zap.String("signal", sig.String()))
			os.Exit(1)
		default:
			stopping = true
			a.log.Info("shutting down: draining sessions", zap.String("signal", sig.String()),
				zap.Duration("shutdown_timeout", a.config().Listen.ShutdownTimeout))
			drain()
		}
	}
}

// watch reloads when the file's content changes (a write, a rename over
// it, a Kubernetes ConfigMap symlink swap). Polling the content keeps it
// independent of how the file was replaced.
func (a *app) watch(ctx context.Context) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(a.path)
		if err != nil {
			continue // a replace in progress; the next tick sees the new file
		}
		a.mu.Lock()
		changed := sha256.Sum256(data) != a.fileSum
		a.mu.Unlock()
		if changed {
			if err := a.reload(); err != nil {
				a.log.Error("reload after a file change failed; the previous configuration stays", zap.Error(err))
			}
		}
	}
}

func (a *app) config() *routing.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// errNotReloadable names settings that only a restart can change.
var errNotReloadable = errors.New("needs a restart to change")

// reload parses, validates and builds the file, then swaps it in. On any
// error nothing changes and the failure is logged and exported.
func (a *app) reload() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	data, err := os.ReadFile(a.path)
	var cfg *routing.Config
	if err == nil {
		cfg, err = routing.Load(a.path)
	}
	if err == nil {
		switch {
		case cfg.Listen.Address != a.cfg.Listen.Address:
			err = fmt.Errorf("listen.address %w", errNotReloadable)
		case cfg.Admin.Address != a.cfg.Admin.Address:
			err = fmt.Errorf("admin.address %w", errNotReloadable)
		case cfg.Metrics.TenantLabels != a.cfg.Metrics.TenantLabels:
			err = fmt.Errorf("metrics.tenant_labels %w", errNotReloadable)
		}
	}
	if err == nil {
		err = a.srv.Reload(cfg)
	}
	if data != nil {
		a.fileSum = sha256.Sum256(data) // a refused file is not retried until it changes again
	}
	if err != nil {
		a.reloadOK = false
		return err
	}
	a.pool.Update(cfg)
	if lvl, perr := zap.ParseAtomicLevel(cfg.Log.Level); perr == nil {
		a.level.SetLevel(lvl.Level())
	}
	a.cfg = cfg
	a.reloadOK = true
	a.reloadAt = time.Now()
	a.reloadCount++
	a.log.Info("configuration reloaded", zap.Int("tenants", len(cfg.Tenants)))
	return nil
}

// snapshot is the metrics source: the proxy's live state plus what only
// the process knows (reloads, backend dials).
func (a *app) snapshot() stats.Snapshot {
	s := a.srv.Snapshot()
	a.mu.Lock()
	s.LastReloadSuccessful, s.LastReloadSuccess = a.reloadOK, a.reloadAt
	a.mu.Unlock()
	bs := a.pool.BackendStats()
	s.BackendConnects = bs.Connects.Snapshot()
	s.BackendConnectSeconds = bs.ConnectSeconds.Snapshot()
	return s
}

// ready reports whether the router can route. An idle router (no backend
// connection open) is ready without probing, so probes never wake a
// paused cluster; otherwise the backend's address must accept a TCP
// connection (no PostgreSQL session is opened, nothing is logged by the
// server).
func (a *app) ready(ctx context.Context) error {
	if open, _ := a.pool.Budget(); open == 0 {
		return nil
	}
	be := a.config().Backend
	addr := net.JoinHostPort(be.Host, strconv.Itoa(be.Port))
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("backend %s unreachable: %w", addr, err)
	}
	return c.Close()
}
