// Package metrics turns the router's live counters into what SREs look at:
// a Prometheus exposition and the health endpoints, served over HTTP on
// admin.address.
//
// It owns no counters. The proxy and the pool count into internal/stats;
// at every scrape one collector calls Options.Source once, reads the
// resulting stats.Snapshot and emits constant metrics from it. A tenant that
// is no longer in the snapshot therefore has no series at the next scrape,
// and nothing is counted twice.
//
//	proxy, pool ──count──▶ internal/stats ──Source()──▶ collector ─┐
//	                                                               ▼
//	Prometheus ──GET /metrics──▶ Handler ── private prometheus.Registry
//	                                         (collector, Go runtime, process)
//	kubelet / NLB ──GET /healthz, /readyz──▶ Handler ── Options.Ready, Snapshot.Draining
//
// The registry is private to each Handler; nothing is registered globally.
// Server runs a Handler on a listener and shuts down gracefully when its
// context ends.
//
// With Options.TenantLabels false every tenant is folded into one series
// with tenant="" (counters and gauges summed, histograms merged), for fleets
// with thousands of tenants. To keep the folded counters monotonic when a
// tenant is removed, the collector remembers the last counters it saw for
// each tenant and keeps a removed tenant's final counts in the folded total;
// that is the only state it holds.
//
// docs/observability.md lists every metric, its labels and what the
// reasons mean; deploy/monitoring holds the dashboard and alerting rules
// built on these names.
package metrics
