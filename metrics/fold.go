package metrics

import (
	"fmt"
	"maps"
	"slices"

	"github.com/pgbridge/pgbridge/internal/stats"
)

// fold sums tenants into one TenantSnapshot for TenantLabels false. The
// counters of tenants that have left the snapshot since the last scrape are
// added to c.retired first, so that every folded counter is monotonic:
// Prometheus would read a drop as a counter reset and rate() would report
// the whole remaining total as new increase. The caller holds c.mu.
//
// A tenant removed and added again under the same name starts from zero (a
// new stats.Tenant); when that happens between two scrapes the name is in
// both snapshots, and the new incarnation is recognised by a counter that
// went down (within one incarnation none ever does).
func (c *collector) fold(tenants []stats.TenantSnapshot) (stats.TenantSnapshot, error) {
	// Check everything before touching state, so that the merges below
	// cannot fail halfway.
	for i := range tenants {
		t := &tenants[i]
		for _, h := range []stats.HistogramSnapshot{t.QueryDuration, t.PoolWait} {
			if _, err := foldableHist(h); err != nil {
				return stats.TenantSnapshot{}, fmt.Errorf("tenant %q: %w", t.Name, err)
			}
		}
	}

	next := make(map[string]stats.TenantSnapshot, len(tenants))
	for i := range tenants {
		next[tenants[i].Name] = countersOf(&tenants[i])
	}
	for _, name := range slices.Sorted(maps.Keys(c.last)) {
		// A tenant that left, or that was removed and added again between
		// two scrapes (same name, counters started again from zero: some
		// counter went down), retires its last counts.
		if n, ok := next[name]; !ok || wentDown(c.last[name], n) {
			t := c.last[name]
			addCounters(&c.retired, &t)
		}
	}
	c.last = next

	out := countersOf(&c.retired)
	for i := range tenants {
		t := &tenants[i]
		addCounters(&out, t)
		out.ClientsActive += t.ClientsActive
		out.ClientsIdle += t.ClientsIdle
		out.ClientsWaiting += t.ClientsWaiting
		out.ServersActive += t.ServersActive
		out.ServersIdle += t.ServersIdle
		out.ServersConnecting += t.ServersConnecting
		out.Pinned += t.Pinned
	}
	return out, nil
}

// countersOf copies the counter fields of t (names, gauges and Paused are
// left zero), sharing no map or slice with it.
func countersOf(t *stats.TenantSnapshot) stats.TenantSnapshot {
	var out stats.TenantSnapshot
	addCounters(&out, t)
	return out
}

// addCounters adds the counter fields of src into dst. dst's maps and
// histogram slices are replaced by fresh ones, never shared with src.
func addCounters(dst, src *stats.TenantSnapshot) {
	dst.Queries += src.Queries
	dst.Transactions += src.Transactions
	dst.BytesIn += src.BytesIn
	dst.BytesOut += src.BytesOut
	dst.QueryDuration = mergeHist(dst.QueryDuration, src.QueryDuration)
	dst.PoolWait = mergeHist(dst.PoolWait, src.PoolWait)
	dst.Rejections = addMap(dst.Rejections, src.Rejections)
	dst.Cancels = addMap(dst.Cancels, src.Cancels)
	dst.SessionCloses = addMap(dst.SessionCloses, src.SessionCloses)
	dst.Pins = addMap(dst.Pins, src.Pins)
	dst.Errors = addMap(dst.Errors, src.Errors)
}

// addMap returns a new map holding the sums of a and b.
func addMap(a, b map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(a)+len(b))
	maps.Copy(out, a)
	for k, v := range b {
		out[k] += v
	}
	return out
}

// foldableHist normalizes h and checks it uses stats.DefaultBuckets, the
// only bounds that can be merged with the other tenants'.
func foldableHist(h stats.HistogramSnapshot) (stats.HistogramSnapshot, error) {
	h, err := normalizeHist(h)
	if err != nil {
		return h, err
	}
	if !slices.Equal(h.Bounds, stats.DefaultBuckets) {
		return h, fmt.Errorf("histogram bounds %v differ from stats.DefaultBuckets", h.Bounds)
	}
	return h, nil
}

// mergeHist returns a+b as a new snapshot. Both must pass foldableHist.
func mergeHist(a, b stats.HistogramSnapshot) stats.HistogramSnapshot {
	a, _ = foldableHist(a)
	b, _ = foldableHist(b)
	return a.Merge(b)
}

// wentDown reports whether any counter of now is below the same counter of
// last: now is a new incarnation of the tenant, counting from zero.
func wentDown(last, now stats.TenantSnapshot) bool {
	if now.Queries < last.Queries || now.Transactions < last.Transactions ||
		now.BytesIn < last.BytesIn || now.BytesOut < last.BytesOut ||
		now.QueryDuration.Count < last.QueryDuration.Count || now.PoolWait.Count < last.PoolWait.Count {
		return true
	}
	for _, pair := range [][2]map[string]uint64{
		{last.Rejections, now.Rejections}, {last.Cancels, now.Cancels},
		{last.SessionCloses, now.SessionCloses}, {last.Pins, now.Pins}, {last.Errors, now.Errors},
	} {
		for k, v := range pair[0] {
			if pair[1][k] < v {
				return true
			}
		}
	}
	return false
}
