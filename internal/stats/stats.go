package stats

import (
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons used as label values. They are the metric-side names of the
// conditions in the proxy's error catalogue; keep them stable, dashboards
// and alerts select on them.
const (
	// pgbridge_client_rejections_total{reason}
	RejectClientCap       = "client_cap"
	RejectGlobalCap       = "global_cap"
	RejectPoolTimeout     = "pool_timeout"
	RejectRateLimit       = "rate_limit"
	RejectConnectionRate  = "connection_rate"
	RejectAuthFailed      = "auth_failed"
	RejectDatabase        = "database_mismatch"
	RejectLoginThrottled  = "login_throttled"
	RejectMessageTooLarge = "message_too_large"

	// pgbridge_cancels_total{reason}
	CancelClient           = "client"
	CancelStatementTimeout = "statement_timeout"
	CancelSessionEnd       = "session_end"

	// pgbridge_session_closes_total{reason}
	CloseIdleInTransaction = "idle_in_transaction"
	CloseClientIdle        = "client_idle"
	CloseDrain             = "drain"
	CloseTenantRemoved     = "tenant_removed"
	CloseKilled            = "killed"
	CloseBackendLost       = "backend_lost"
	CloseStatementTimeout  = "statement_timeout"
	CloseProtocol          = "protocol_violation"

	// pgbridge_pins_total{reason}: what pinned a transaction-mode session
	// to its backend.
	PinSet          = "set"
	PinPrepare      = "prepare"
	PinListen       = "listen"
	PinTempTable    = "temp_table"
	PinAdvisoryLock = "advisory_lock"
	PinHoldCursor   = "hold_cursor"
	PinLoad         = "load"
	PinFunctionCall = "function_call" // the fastpath FunctionCall message
	PinCopySync     = "copy_sync"     // a COPY failed with Syncs in flight the server may or may not answer

	// pgbridge_backend_connects_total{result}
	ConnectOK    = "ok"
	ConnectError = "error"
)

// Tenant is one tenant's counters. The zero value is ready to use; all
// methods are safe for concurrent use.
type Tenant struct {
	Queries      atomic.Uint64 // client Query and Sync messages (one per round trip)
	Transactions atomic.Uint64 // ReadyForQuery 'I' after work, i.e. finished transactions
	BytesIn      atomic.Uint64 // client -> router
	BytesOut     atomic.Uint64 // router -> client

	QueryDuration Histogram // seconds from a query's first message to its ReadyForQuery
	PoolWait      Histogram // seconds spent waiting for a backend

	Rejections    Labeled
	Cancels       Labeled
	SessionCloses Labeled
	Pins          Labeled
	Errors        Labeled // SQLSTATE class (two characters) of backend errors
}

// Labeled counts events by a label value. Events are rare (refusals,
// cancels, pins, errors), so a mutex is cheap enough and keeps the label set
// open.
type Labeled struct {
	mu sync.Mutex
	m  map[string]uint64
}

// Inc adds one event with label value v.
func (l *Labeled) Inc(v string) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]uint64)
	}
	l.m[v]++
	l.mu.Unlock()
}

// Get returns the count for v.
func (l *Labeled) Get(v string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[v]
}

// Snapshot returns a copy of all counts.
func (l *Labeled) Snapshot() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.m)
}

// DefaultBuckets are the upper bounds (seconds) of every latency histogram:
// from 100 µs (a pooled select on a quiet cluster) to a minute.
var DefaultBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
}

// Histogram is a lock-free histogram over DefaultBuckets. The zero value is
// ready to use.
type Histogram struct {
	counts [19]atomic.Uint64 // len(DefaultBuckets)+1; the last is +Inf
	sumNS  atomic.Int64
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(DefaultBuckets) && s > DefaultBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNS.Add(int64(d))
}

// Snapshot reads the histogram.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Bounds: DefaultBuckets, Counts: make([]uint64, len(DefaultBuckets)+1)}
	for i := range s.Counts {
		c := h.counts[i].Load()
		s.Counts[i] = c
		s.Count += c
	}
	s.Sum = float64(h.sumNS.Load()) / float64(time.Second)
	return s
}

// HistogramSnapshot is a histogram read at one instant.
type HistogramSnapshot struct {
	Bounds []float64 // upper bounds, ascending; shared, do not modify
	Counts []uint64  // per bucket, NOT cumulative; len(Bounds)+1, the last is +Inf
	Count  uint64
	Sum    float64 // seconds
}

// Cumulative returns the cumulative count at each bound, the form
// Prometheus exposes.
func (s HistogramSnapshot) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(s.Bounds))
	var acc uint64
	for i, b := range s.Bounds {
		acc += s.Counts[i]
		out[b] = acc
	}
	return out
}

// Quantile estimates the q-quantile (0..1) by linear interpolation inside
// the bucket, as Prometheus' histogram_quantile does. NaN when empty.
func (s HistogramSnapshot) Quantile(q float64) float64 {
	if s.Count == 0 {
		return math.NaN()
	}
	rank := q * float64(s.Count)
	var acc uint64
	for i, c := range s.Counts {
		if float64(acc+c) >= rank && c > 0 {
			lo := 0.0
			if i > 0 {
				lo = s.Bounds[i-1]
			}
			if i == len(s.Bounds) {
				return lo // +Inf bucket: the highest finite bound
			}
			hi := s.Bounds[i]
			return lo + (hi-lo)*(rank-float64(acc))/float64(c)
		}
		acc += c
	}
	return s.Bounds[len(s.Bounds)-1]
}

// Merge adds o into s (same bounds), for folding tenants together.
func (s HistogramSnapshot) Merge(o HistogramSnapshot) HistogramSnapshot {
	if s.Counts == nil {
		s = HistogramSnapshot{Bounds: o.Bounds, Counts: make([]uint64, len(o.Counts))}
	} else {
		s.Counts = append([]uint64(nil), s.Counts...)
	}
	for i, c := range o.Counts {
		s.Counts[i] += c
	}
	s.Count += o.Count
	s.Sum += o.Sum
	return s
}

// Backend counts dials to the cluster (no tenant label: the dial cost is a
// property of the cluster, not of a tenant).
type Backend struct {
	Connects       Labeled   // result: "ok", "error"
	ConnectSeconds Histogram // successful and failed dials
}

// Snapshot is everything the metrics package exposes, read at one instant.
type Snapshot struct {
	Tenants []TenantSnapshot // sorted by name; only configured tenants

	Budget BudgetSnapshot

	BackendConnects       map[string]uint64 // result -> count
	BackendConnectSeconds HistogramSnapshot

	// LastReloadSuccessful is false after a reload that failed (the old
	// configuration still serves); LastReloadSuccess is when a
	// configuration was last loaded successfully (startup counts).
	LastReloadSuccessful bool
	LastReloadSuccess    time.Time

	Draining bool
}

// BudgetSnapshot is the shared backend budget.
type BudgetSnapshot struct {
	InUse int // handed out to sessions (and being dialed)
	Idle  int
	Limit int // backend.max_connections

	// ActiveTransactions are admitted under ActiveLimit
	// (backend.max_active_transactions; 0 = no limit, nothing counted),
	// and AdmitWaiting wait for admission.
	ActiveTransactions int
	AdmitWaiting       int
	ActiveLimit        int
}

// TenantSnapshot is one tenant's live state and counters.
type TenantSnapshot struct {
	Name string

	// Client sessions by state: Active holds a backend, Waiting waits for
	// one (pool, rate limit or PAUSE), Idle holds none.
	ClientsActive, ClientsIdle, ClientsWaiting int
	// Backend connections by state.
	ServersActive, ServersIdle, ServersConnecting int
	// Pinned counts sessions pinned to their backend right now.
	Pinned int
	Paused bool

	Queries, Transactions uint64
	BytesIn, BytesOut     uint64
	QueryDuration         HistogramSnapshot
	PoolWait              HistogramSnapshot

	Rejections    map[string]uint64
	Cancels       map[string]uint64
	SessionCloses map[string]uint64
	Pins          map[string]uint64
	Errors        map[string]uint64
}

// Counters fills the counter fields of ts from t.
func (t *Tenant) Counters(ts *TenantSnapshot) {
	ts.Queries = t.Queries.Load()
	ts.Transactions = t.Transactions.Load()
	ts.BytesIn = t.BytesIn.Load()
	ts.BytesOut = t.BytesOut.Load()
	ts.QueryDuration = t.QueryDuration.Snapshot()
	ts.PoolWait = t.PoolWait.Snapshot()
	ts.Rejections = t.Rejections.Snapshot()
	ts.Cancels = t.Cancels.Snapshot()
	ts.SessionCloses = t.SessionCloses.Snapshot()
	ts.Pins = t.Pins.Snapshot()
	ts.Errors = t.Errors.Snapshot()
}
