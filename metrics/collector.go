package metrics

import (
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgbridge/pgbridge/internal/stats"
)

// The label values every tenant gets from its first scrape on, with value 0
// until something happens, so that dashboards and rate() see the series
// from the start. Values the snapshot carries beyond these are exported too.
// TestReasonListsCoverStats keeps these lists in step with internal/stats.
var (
	rejectionReasons = []string{
		stats.RejectClientCap, stats.RejectGlobalCap, stats.RejectPoolTimeout,
		stats.RejectRateLimit, stats.RejectConnectionRate, stats.RejectAuthFailed,
		stats.RejectDatabase, stats.RejectLoginThrottled, stats.RejectMessageTooLarge,
	}
	cancelReasons = []string{stats.CancelClient, stats.CancelStatementTimeout, stats.CancelSessionEnd}
	closeReasons  = []string{
		stats.CloseIdleInTransaction, stats.CloseClientIdle, stats.CloseDrain,
		stats.CloseTenantRemoved, stats.CloseKilled, stats.CloseBackendLost,
		stats.CloseStatementTimeout, stats.CloseProtocol,
	}
	pinReasons = []string{
		stats.PinSet, stats.PinPrepare, stats.PinListen, stats.PinTempTable,
		stats.PinAdvisoryLock, stats.PinHoldCursor, stats.PinLoad, stats.PinFunctionCall,
		stats.PinCopySync,
	}
	connectResults = []string{stats.ConnectOK, stats.ConnectError}
)

// collector is the one prometheus.Collector over stats.Snapshot.
type collector struct {
	source       func() stats.Snapshot
	tenantLabels bool
	version      string

	clientConns     *prometheus.Desc
	serverConns     *prometheus.Desc
	queries         *prometheus.Desc
	transactions    *prometheus.Desc
	queryDuration   *prometheus.Desc
	poolWait        *prometheus.Desc
	rejections      *prometheus.Desc
	cancels         *prometheus.Desc
	sessionCloses   *prometheus.Desc
	pinned          *prometheus.Desc
	pins            *prometheus.Desc
	paused          *prometheus.Desc
	bytes           *prometheus.Desc
	errors          *prometheus.Desc
	backendConnects *prometheus.Desc
	backendSeconds  *prometheus.Desc
	budget          *prometheus.Desc
	activeTx        *prometheus.Desc
	reloadOK        *prometheus.Desc
	reloadTime      *prometheus.Desc
	buildInfo       *prometheus.Desc

	// Folded mode only (tenantLabels false): the counters last seen per
	// tenant, and the sum of the final counters of tenants that have left
	// the snapshot, so that the folded counters never go down. mu also
	// serialises folded scrapes, so an older snapshot is never applied
	// after a newer one.
	mu      sync.Mutex
	last    map[string]stats.TenantSnapshot
	retired stats.TenantSnapshot
}

func newCollector(source func() stats.Snapshot, tenantLabels bool, version string) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("pgbridge_"+name, help, labels, nil)
	}
	return &collector{
		source:       source,
		tenantLabels: tenantLabels,
		version:      version,

		clientConns: d("client_connections",
			"Client connections by state: active holds a backend connection, waiting waits for one (pool, rate limit or PAUSE), idle holds none.",
			"tenant", "state"),
		serverConns: d("server_connections",
			"Backend connections of the tenant's pool by state: active is serving a client, idle is pooled, connecting is being dialed.",
			"tenant", "state"),
		queries: d("queries_total",
			"Client round trips (simple Query messages and extended-protocol Syncs) relayed.",
			"tenant"),
		transactions: d("transactions_total",
			"Transactions finished (ReadyForQuery back to idle after work).",
			"tenant"),
		queryDuration: d("query_duration_seconds",
			"Seconds from a query's first client message to its ReadyForQuery, including any wait for a backend connection.",
			"tenant"),
		poolWait: d("pool_wait_seconds",
			"Seconds a transaction waited for a backend connection from the tenant's pool.",
			"tenant"),
		rejections: d("client_rejections_total",
			"Logins, queries and messages the router refused, by reason (see docs/observability.md).",
			"tenant", "reason"),
		cancels: d("cancels_total",
			"Statements cancelled: reason client is a client CancelRequest, statement_timeout the router's hard cap, session_end a statement still running when its session ended.",
			"tenant", "reason"),
		sessionCloses: d("session_closes_total",
			"Client sessions the router ended, by reason.",
			"tenant", "reason"),
		pinned: d("pinned_sessions",
			"Client sessions pinned to their backend connection right now because of session state.",
			"tenant"),
		pins: d("pins_total",
			"Client sessions that became pinned to their backend connection, by the statement kind that pinned them.",
			"tenant", "reason"),
		paused: d("tenant_paused",
			"1 while the tenant is paused from the admin console, else 0 (without tenant labels: the number of paused tenants).",
			"tenant"),
		bytes: d("bytes_total",
			"Bytes relayed: direction in is client to router, out is router to client.",
			"tenant", "direction"),
		errors: d("errors_total",
			"Errors the backend returned to clients, by SQLSTATE class (the first two characters of the code).",
			"tenant", "class"),
		backendConnects: d("backend_connects_total",
			"Dials to the backend cluster by result (ok or error), every retry counted.",
			"result"),
		backendSeconds: d("backend_connect_seconds",
			"Seconds one dial to the backend cluster took, through authentication, failed dials included."),
		budget: d("backend_budget",
			"The backend connection budget shared by all tenants: in_use handed to sessions or being dialed, idle pooled, limit backend.max_connections.",
			"state"),
		activeTx: d("active_transactions",
			"Transactions under backend.max_active_transactions: active counted over all transaction-mode tenants (admitted and not waiting for their client), waiting queued for admission, limit the setting (0: no limit, nothing counted).",
			"state"),
		reloadOK: d("config_last_reload_successful",
			"1 if the last configuration load succeeded, 0 if it failed and the previous configuration still serves."),
		reloadTime: d("config_last_reload_success_timestamp_seconds",
			"Unix time in seconds of the last successful configuration load (startup counts)."),
		buildInfo: d("build_info",
			"Always 1; the labels say which pgbridge build is running.",
			"version", "goversion"),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.clientConns, c.serverConns, c.queries, c.transactions, c.queryDuration,
		c.poolWait, c.rejections, c.cancels, c.sessionCloses, c.pinned, c.pins,
		c.paused, c.bytes, c.errors, c.backendConnects, c.backendSeconds,
		c.budget, c.activeTx, c.reloadOK, c.reloadTime, c.buildInfo,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one Source call per scrape.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := emitter{ch: ch}
	if c.tenantLabels {
		s := c.source()
		for i := range s.Tenants {
			t := &s.Tenants[i]
			paused := 0.0
			if t.Paused {
				paused = 1
			}
			c.collectTenant(e, t, t.Name, paused)
		}
		c.collectRouter(e, &s)
		return
	}

	c.mu.Lock()
	s := c.source()
	folded, err := c.fold(s.Tenants)
	c.mu.Unlock()
	if err != nil {
		e.invalid(c.queryDuration, err)
	} else {
		paused := 0
		for i := range s.Tenants {
			if s.Tenants[i].Paused {
				paused++
			}
		}
		c.collectTenant(e, &folded, "", float64(paused))
	}
	c.collectRouter(e, &s)
}

// collectTenant emits the per-tenant families for one tenant (or for the
// folded total, with tenant ""). paused is the value of
// pgbridge_tenant_paused: 0 or 1 for one tenant, the number of paused
// tenants for the folded total.
func (c *collector) collectTenant(e emitter, t *stats.TenantSnapshot, tenant string, paused float64) {
	e.gauge(c.clientConns, float64(t.ClientsActive), tenant, "active")
	e.gauge(c.clientConns, float64(t.ClientsIdle), tenant, "idle")
	e.gauge(c.clientConns, float64(t.ClientsWaiting), tenant, "waiting")
	e.gauge(c.serverConns, float64(t.ServersActive), tenant, "active")
	e.gauge(c.serverConns, float64(t.ServersIdle), tenant, "idle")
	e.gauge(c.serverConns, float64(t.ServersConnecting), tenant, "connecting")

	e.counter(c.queries, t.Queries, tenant)
	e.counter(c.transactions, t.Transactions, tenant)
	e.counter(c.bytes, t.BytesIn, tenant, "in")
	e.counter(c.bytes, t.BytesOut, tenant, "out")

	e.histogram(c.queryDuration, t.QueryDuration, tenant)
	e.histogram(c.poolWait, t.PoolWait, tenant)

	e.labeled(c.rejections, t.Rejections, rejectionReasons, tenant)
	e.labeled(c.cancels, t.Cancels, cancelReasons, tenant)
	e.labeled(c.sessionCloses, t.SessionCloses, closeReasons, tenant)
	e.labeled(c.pins, t.Pins, pinReasons, tenant)
	e.labeled(c.errors, t.Errors, nil, tenant) // SQLSTATE classes: too many to pre-populate

	e.gauge(c.pinned, float64(t.Pinned), tenant)
	e.gauge(c.paused, paused, tenant)
}

// collectRouter emits the families without a tenant label.
func (c *collector) collectRouter(e emitter, s *stats.Snapshot) {
	e.labeled(c.backendConnects, s.BackendConnects, connectResults)
	e.histogram(c.backendSeconds, s.BackendConnectSeconds)

	e.gauge(c.budget, float64(s.Budget.InUse), "in_use")
	e.gauge(c.budget, float64(s.Budget.Idle), "idle")
	e.gauge(c.budget, float64(s.Budget.Limit), "limit")
	e.gauge(c.activeTx, float64(s.Budget.ActiveTransactions), "active")
	e.gauge(c.activeTx, float64(s.Budget.AdmitWaiting), "waiting")
	e.gauge(c.activeTx, float64(s.Budget.ActiveLimit), "limit")

	ok := 0.0
	if s.LastReloadSuccessful {
		ok = 1
	}
	e.gauge(c.reloadOK, ok)
	ts := 0.0
	if !s.LastReloadSuccess.IsZero() {
		ts = float64(s.LastReloadSuccess.UnixNano()) / 1e9
	}
	e.gauge(c.reloadTime, ts)

	e.gauge(c.buildInfo, 1, c.version, runtime.Version())
}
