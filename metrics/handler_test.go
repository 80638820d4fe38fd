package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgbridge/pgbridge/internal/stats"
	"github.com/pgbridge/pgbridge/metrics/internal/sample"
)

func get(t *testing.T, h http.Handler, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func sampleSource() stats.Snapshot { return sample.Snapshot() }

func TestHealthz(t *testing.T) {
	h := New(Options{Source: sampleSource, Ready: func(context.Context) error { return errors.New("backend down") }})
	rec := get(t, h, "/healthz")
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok even when not ready", rec.Code, rec.Body)
	}
}

func TestReadyz(t *testing.T) {
	var failure atomic.Pointer[error]
	var draining atomic.Bool
	core, logs := observer.New(zap.InfoLevel)
	h := New(Options{
		Source: func() stats.Snapshot {
			s := sample.Snapshot()
			s.Draining = draining.Load()
			return s
		},
		Ready: func(ctx context.Context) error {
			if e := failure.Load(); e != nil {
				return *e
			}
			return nil
		},
		Logger: zap.New(core),
	})
	check := func(step string, code int, body string) {
		t.Helper()
		rec := get(t, h, "/readyz")
		if rec.Code != code || !strings.Contains(rec.Body.String(), body) {
			t.Errorf("%s: /readyz = %d %q, want %d containing %q", step, rec.Code, rec.Body, code, body)
		}
	}

	check("ready", http.StatusOK, "ready")
	down := errors.New("backend: dial tcp 127.0.0.1:5432: connection refused")
	failure.Store(&down)
	check("backend stopped", http.StatusServiceUnavailable, "not ready: backend: dial tcp 127.0.0.1:5432: connection refused")
	check("still stopped", http.StatusServiceUnavailable, "connection refused")
	failure.Store(nil)
	check("backend back", http.StatusOK, "ready")
	draining.Store(true)
	check("draining", http.StatusServiceUnavailable, "draining")

	// One line per change, not one per probe.
	var msgs []string
	for _, e := range logs.All() {
		msgs = append(msgs, e.Message)
	}
	want := []string{"router ready", "router not ready", "router ready", "router not ready"}
	if strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Errorf("log lines = %q, want %q", msgs, want)
	}
}

func TestReadyzNilReady(t *testing.T) {
	h := New(Options{Source: sampleSource})
	if rec := get(t, h, "/readyz"); rec.Code != http.StatusOK {
		t.Errorf("/readyz without a Ready func = %d, want 200", rec.Code)
	}
}

func TestReadyzTimeout(t *testing.T) {
	h := New(Options{
		Source:       sampleSource,
		ReadyTimeout: 20 * time.Millisecond,
		Ready: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		},
	})
	rec := get(t, h, "/readyz")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "no answer within 20ms") {
		t.Errorf("/readyz with a hanging check = %d %q, want 503 naming the timeout", rec.Code, rec.Body)
	}
}

func TestReadyzPanic(t *testing.T) {
	h := New(Options{Source: sampleSource, Ready: func(context.Context) error { panic("boom") }})
	rec := get(t, h, "/readyz")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "failed internally") {
		t.Errorf("/readyz with a panicking check = %d %q", rec.Code, rec.Body)
	}
}

// Concurrent probes share one call of Ready.
func TestReadyzCoalesces(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	h := New(Options{Source: sampleSource, Ready: func(ctx context.Context) error {
		calls.Add(1)
		select {
		case <-release:
			return errors.New("still resuming")
		case <-ctx.Done():
			return ctx.Err()
		}
	}})
	const n = 5
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = get(t, h, "/readyz").Code
		}()
	}
	// Wait until every request waits on the one probe.
	deadline := time.Now().Add(10 * time.Second)
	for h.ready.waiting() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if c := calls.Load(); c != 1 {
		t.Errorf("Ready called %d times for %d concurrent probes, want 1", c, n)
	}
	for i, c := range codes {
		if c != http.StatusServiceUnavailable {
			t.Errorf("probe %d = %d, want 503", i, c)
		}
	}
}

func TestMetricsContentNegotiation(t *testing.T) {
	h := New(Options{Source: sampleSource, TenantLabels: true, Version: "v9"})

	rec := get(t, h, "/metrics")
	if ct := rec.Header().Get("Content-Type"); rec.Code != http.StatusOK || !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("plain scrape: %d %q", rec.Code, ct)
	}
	if !strings.Contains(rec.Body.String(), `pgbridge_queries_total{tenant="acme"} 1000`) {
		t.Error("plain scrape lacks acme's queries")
	}

	rec = get(t, h, "/metrics", "Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	body := rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("OpenMetrics scrape served as %q", ct)
	}
	for _, want := range []string{
		"# TYPE pgbridge_queries counter\n",
		`pgbridge_queries_total{tenant="acme"} 1000`,
		`",version="v9"} 1.0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("OpenMetrics body lacks %q", want)
		}
	}
	if !strings.HasSuffix(body, "# EOF\n") {
		t.Error("OpenMetrics body does not end with # EOF")
	}

	// The exposition parses back and agrees with the collector.
	if err := testutil.ScrapeAndCompare(serve(t, h)+"/metrics", strings.NewReader(`
# HELP pgbridge_tenant_paused 1 while the tenant is paused from the admin console, else 0 (without tenant labels: the number of paused tenants).
# TYPE pgbridge_tenant_paused gauge
pgbridge_tenant_paused{tenant="acme"} 0
pgbridge_tenant_paused{tenant="globex"} 1
`), "pgbridge_tenant_paused"); err != nil {
		t.Error(err)
	}
}

// serve runs h on a loopback httptest server for the test's lifetime.
func serve(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestExpositionLint(t *testing.T) {
	for _, labels := range []bool{true, false} {
		h := New(Options{Source: sampleSource, TenantLabels: labels})
		get(t, h, "/metrics") // so the promhttp self-metrics have samples
		problems, err := testutil.GatherAndLint(h.Registry())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("tenantLabels=%v: %s: %s", labels, p.Metric, p.Text)
		}
	}
}

func TestBadValueDoesNotBreakScrape(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	h := New(Options{
		Source: func() stats.Snapshot {
			s := sample.Snapshot()
			s.Tenants[0].Errors["\xff\xfe"] = 1 // not UTF-8
			return s
		},
		TenantLabels: true,
		Logger:       zap.New(core),
	})
	rec := get(t, h, "/metrics")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `pgbridge_queries_total{tenant="globex"} 2000`) {
		t.Errorf("scrape with one bad label value = %d; the other series must still be served", rec.Code)
	}
	if logs.FilterMessage("metrics exposition error").Len() == 0 {
		t.Error("the bad value was not logged")
	}
}

func TestRoutes(t *testing.T) {
	h := New(Options{Source: sampleSource})
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/", http.StatusOK},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodHead, "/healthz", http.StatusOK},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.code)
		}
	}
}

func TestNewWithoutSource(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New without Source did not panic")
		}
	}()
	New(Options{})
}

func TestVersionDefault(t *testing.T) {
	h := New(Options{Source: sampleSource})
	body, _ := io.ReadAll(get(t, h, "/metrics").Body)
	if !strings.Contains(string(body), `pgbridge_build_info{goversion="`) {
		t.Error("build_info missing")
	}
}
