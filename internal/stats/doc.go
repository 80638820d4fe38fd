// Package stats holds the router's live counters and the snapshot type the
// metrics package reads at scrape time.
//
// The proxy and the pool update counters on their hot paths (atomics, no
// locks for the per-query ones, no allocation); the metrics package never
// touches proxy or pool internals, it calls a func() Snapshot. Keeping the
// counters here, not in Prometheus objects, lets a removed tenant's series
// vanish simply because its Tenant is no longer in the snapshot, and lets
// tests read exact counts without scraping.
package stats
