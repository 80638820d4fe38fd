package proxy

import (
	"slices"

	"github.com/pgbridge/pgbridge/internal/stats"
)

// Snapshot reads the router's live state and counters for the metrics
// endpoint and the admin console: one entry per configured tenant, client
// sessions by state, the tenant pools and the shared backend budget.
func (s *Server) Snapshot() stats.Snapshot {
	poolStats := s.pool.Stats()
	var snap stats.Snapshot
	s.mu.Lock()
	byName := make(map[string]*stats.TenantSnapshot, len(s.tenants))
	names := make([]string, 0, len(s.tenants))
	for name := range s.tenants {
		names = append(names, name)
	}
	slices.Sort(names)
	snap.Tenants = make([]stats.TenantSnapshot, len(names))
	for i, name := range names {
		ts := &snap.Tenants[i]
		ts.Name = name
		s.tenants[name].stats.Counters(ts)
		ts.Paused = s.tenants[name].gate.Load() != nil
		ps := poolStats[name]
		ts.ServersActive, ts.ServersIdle, ts.ServersConnecting = ps.InUse, ps.Idle, ps.Dialing
		byName[name] = ts
	}
	for ss := range s.sessions {
		ts := byName[ss.ts.name]
		if ts == nil {
			continue // a removed tenant's session, ending
		}
		ss.mu.Lock()
		switch {
		case ss.be != nil:
			ts.ClientsActive++
		case ss.waiting:
			ts.ClientsWaiting++
		default:
			ts.ClientsIdle++
		}
		if ss.pinned != "" {
			ts.Pinned++
		}
		ss.mu.Unlock()
	}
	snap.Draining = s.draining
	s.mu.Unlock()

	open, limit := s.pool.Budget()
	idle, admitWaiting := 0, 0
	for _, ps := range poolStats {
		idle += ps.Idle
		admitWaiting += ps.AdmitWaiting
	}
	active, activeLimit := s.pool.ActiveTransactions()
	snap.Budget = stats.BudgetSnapshot{InUse: max(open-idle, 0), Idle: idle, Limit: limit,
		ActiveTransactions: active, AdmitWaiting: admitWaiting, ActiveLimit: activeLimit}
	return snap
}

// TenantStats returns the live counters of a configured tenant (nil for
// an unknown name). For tests and the admin console.
func (s *Server) TenantStats(name string) *stats.Tenant {
	ts := s.tenantState(name)
	if ts == nil {
		return nil
	}
	return &ts.stats
}
