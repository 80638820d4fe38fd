package metrics

import "testing"

// A tenant removed and added back between two scrapes is in both
// snapshots under one name, but with fresh (lower) counters. The folded
// counters must not go down: Prometheus would read a reset and rate()
// would count the whole total again.
func TestFoldedTenantReplacedBetweenScrapes(t *testing.T) {
	src := newSource(sampleLike())
	reg := pedantic(t, newCollector(src.get, false, "v"))
	before := valueMap(gatherSeries(t, reg))

	snap := sampleLike()
	g := &snap.Tenants[1] // globex, a new incarnation: fresh counters
	g.Queries, g.Transactions, g.BytesIn, g.BytesOut = 1, 1, 10, 10
	g.Rejections, g.Cancels, g.SessionCloses, g.Pins, g.Errors = nil, nil, nil, nil, nil
	g.QueryDuration = hist()
	src.set(snap)
	after := valueMap(gatherSeries(t, reg))
	for _, k := range []string{
		`pgbridge_queries_total{tenant=""}`,
		`pgbridge_transactions_total{tenant=""}`,
		`pgbridge_bytes_total{direction="in",tenant=""}`,
		`pgbridge_bytes_total{direction="out",tenant=""}`,
		`pgbridge_client_rejections_total{reason="rate_limit",tenant=""}`,
		`pgbridge_query_duration_seconds_count{tenant=""}`,
	} {
		if after[k] < before[k] {
			t.Errorf("%s went down from %v to %v", k, before[k], after[k])
		}
	}
}
