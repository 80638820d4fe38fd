// Command expose prints the /metrics exposition of the sample snapshot in
// the Prometheus text format, for `promtool check metrics`:
//
//	go run ./metrics/internal/sample/expose | promtool check metrics
//
// With -openmetrics it prints the OpenMetrics form instead.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/pgbridge/pgbridge/internal/stats"
	"github.com/pgbridge/pgbridge/metrics"
	"github.com/pgbridge/pgbridge/metrics/internal/sample"
)

func main() {
	openMetrics := flag.Bool("openmetrics", false, "print OpenMetrics instead of the Prometheus text format")
	foldTenants := flag.Bool("fold", false, "fold tenants into one series (metrics.tenant_labels: false)")
	flag.Parse()

	h := metrics.New(metrics.Options{
		Source:       func() stats.Snapshot { return sample.Snapshot() },
		TenantLabels: !*foldTenants,
		Version:      "sample",
	})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	if *openMetrics {
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		fmt.Fprintf(os.Stderr, "expose: /metrics answered %d: %s", rec.Code, rec.Body)
		os.Exit(1)
	}
	os.Stdout.Write(rec.Body.Bytes())
}
