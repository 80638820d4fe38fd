// Package sample builds a stats.Snapshot with two busy tenants and every
// field set, for checking the exposition (promtool check metrics) and for
// checking that every series the dashboard and the alerting rules select
// is exported.
package sample

import (
	"time"

	"github.com/pgbridge/pgbridge/internal/stats"
)

// Tenants are the tenant names in Snapshot, sorted.
var Tenants = []string{"acme", "globex"}

// Snapshot returns the sample. It is filled through the live counters of
// internal/stats, the way the proxy and the pool fill them.
func Snapshot() stats.Snapshot {
	s := stats.Snapshot{
		Budget:               stats.BudgetSnapshot{InUse: 23, Idle: 5, Limit: 40},
		LastReloadSuccessful: true,
		LastReloadSuccess:    time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC),
	}
	for i, name := range Tenants {
		var t stats.Tenant
		n := uint64(i + 1)
		t.Queries.Add(1000 * n)
		t.Transactions.Add(800 * n)
		t.BytesIn.Add(64000 * n)
		t.BytesOut.Add(512000 * n)
		for j := range 100 * n {
			t.QueryDuration.Observe(time.Duration(j%40) * time.Millisecond)
			t.PoolWait.Observe(time.Duration(j%5) * 300 * time.Millisecond)
		}
		t.Rejections.Inc(stats.RejectPoolTimeout)
		t.Rejections.Inc(stats.RejectRateLimit)
		t.Rejections.Inc(stats.RejectAuthFailed)
		t.Cancels.Inc(stats.CancelClient)
		t.SessionCloses.Inc(stats.CloseIdleInTransaction)
		t.Pins.Inc("set")
		t.Errors.Inc("23")
		t.Errors.Inc("42")

		ts := stats.TenantSnapshot{
			Name:          name,
			ClientsActive: 3 * int(n), ClientsIdle: 10, ClientsWaiting: int(n) - 1,
			ServersActive: 3 * int(n), ServersIdle: 2, ServersConnecting: 1,
			Pinned: 1,
			Paused: i == 1,
		}
		t.Counters(&ts)
		s.Tenants = append(s.Tenants, ts)
	}

	var b stats.Backend
	for range 30 {
		b.Connects.Inc("ok")
		b.ConnectSeconds.Observe(12 * time.Millisecond)
	}
	b.Connects.Inc("error")
	b.ConnectSeconds.Observe(5 * time.Second)
	s.BackendConnects = b.Connects.Snapshot()
	s.BackendConnectSeconds = b.ConnectSeconds.Snapshot()
	return s
}
