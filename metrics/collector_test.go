package metrics

import (
	"go/ast"
	"go/parser"
	"go/token"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pgbridge/pgbridge/internal/stats"
)

var smallBounds = []float64{0.01, 0.1, 1}

// twoTenants is a hand-built snapshot with exact values for every field.
func twoTenants() stats.Snapshot {
	return stats.Snapshot{
		Tenants: []stats.TenantSnapshot{
			{
				Name:          "acme",
				ClientsActive: 2, ClientsIdle: 5, ClientsWaiting: 1,
				ServersActive: 2, ServersIdle: 3, ServersConnecting: 0,
				Pinned:       1,
				Queries:      120,
				Transactions: 100,
				BytesIn:      4096, BytesOut: 65536,
				QueryDuration: stats.HistogramSnapshot{Bounds: smallBounds, Counts: []uint64{70, 25, 4, 1}, Count: 100, Sum: 3.5},
				PoolWait:      stats.HistogramSnapshot{Bounds: smallBounds, Counts: []uint64{9, 1, 0, 0}, Count: 10, Sum: 0.05},
				Rejections:    map[string]uint64{stats.RejectPoolTimeout: 3, stats.RejectRateLimit: 7},
				Cancels:       map[string]uint64{stats.CancelClient: 2},
				SessionCloses: map[string]uint64{stats.CloseIdleInTransaction: 1},
				Pins:          map[string]uint64{"set": 4},
				Errors:        map[string]uint64{"23": 2},
			},
			{
				Name:          "globex",
				ClientsActive: 0, ClientsIdle: 1, ClientsWaiting: 0,
				ServersActive: 0, ServersIdle: 1, ServersConnecting: 1,
				Paused:       true,
				Queries:      5,
				Transactions: 5,
				BytesIn:      100, BytesOut: 200,
				QueryDuration: stats.HistogramSnapshot{Bounds: smallBounds, Counts: []uint64{5, 0, 0, 0}, Count: 5, Sum: 0.01},
				PoolWait:      stats.HistogramSnapshot{Bounds: smallBounds}, // nothing observed yet
				Rejections:    map[string]uint64{stats.RejectClientCap: 2, "some_future_reason": 1},
			},
		},
		Budget: stats.BudgetSnapshot{InUse: 2, Idle: 4, Limit: 10,
			ActiveTransactions: 3, AdmitWaiting: 1, ActiveLimit: 4},
		BackendConnects:       map[string]uint64{"ok": 6, "error": 1},
		BackendConnectSeconds: stats.HistogramSnapshot{Bounds: smallBounds, Counts: []uint64{5, 1, 0, 1}, Count: 7, Sum: 2.2},
		LastReloadSuccessful:  false,
		LastReloadSuccess:     time.Unix(1700000000, 500000000),
	}
}

// source returns a Source whose snapshot the test can replace.
type source struct {
	mu    sync.Mutex
	snap  stats.Snapshot
	calls int
}

func newSource(s stats.Snapshot) *source { return &source{snap: s} }

func (s *source) get() stats.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.snap
}

func (s *source) set(snap stats.Snapshot) {
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
}

func pedantic(t *testing.T, c prometheus.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestCollectorTwoTenants(t *testing.T) {
	reg := pedantic(t, newCollector(newSource(twoTenants()).get, true, "v1.2.3"))
	const want = `
# HELP pgbridge_client_connections Client connections by state: active holds a backend connection, waiting waits for one (pool, rate limit or PAUSE), idle holds none.
# TYPE pgbridge_client_connections gauge
pgbridge_client_connections{state="active",tenant="acme"} 2
pgbridge_client_connections{state="idle",tenant="acme"} 5
pgbridge_client_connections{state="waiting",tenant="acme"} 1
pgbridge_client_connections{state="active",tenant="globex"} 0
pgbridge_client_connections{state="idle",tenant="globex"} 1
pgbridge_client_connections{state="waiting",tenant="globex"} 0
# HELP pgbridge_server_connections Backend connections of the tenant's pool by state: active is serving a client, idle is pooled, connecting is being dialed.
# TYPE pgbridge_server_connections gauge
pgbridge_server_connections{state="active",tenant="acme"} 2
pgbridge_server_connections{state="idle",tenant="acme"} 3
pgbridge_server_connections{state="connecting",tenant="acme"} 0
pgbridge_server_connections{state="active",tenant="globex"} 0
pgbridge_server_connections{state="idle",tenant="globex"} 1
pgbridge_server_connections{state="connecting",tenant="globex"} 1
# HELP pgbridge_queries_total Client round trips (simple Query messages and extended-protocol Syncs) relayed.
# TYPE pgbridge_queries_total counter
pgbridge_queries_total{tenant="acme"} 120
pgbridge_queries_total{tenant="globex"} 5
# HELP pgbridge_transactions_total Transactions finished (ReadyForQuery back to idle after work).
# TYPE pgbridge_transactions_total counter
pgbridge_transactions_total{tenant="acme"} 100
pgbridge_transactions_total{tenant="globex"} 5
# HELP pgbridge_bytes_total Bytes relayed: direction in is client to router, out is router to client.
# TYPE pgbridge_bytes_total counter
pgbridge_bytes_total{direction="in",tenant="acme"} 4096
pgbridge_bytes_total{direction="out",tenant="acme"} 65536
pgbridge_bytes_total{direction="in",tenant="globex"} 100
pgbridge_bytes_total{direction="out",tenant="globex"} 200
# HELP pgbridge_query_duration_seconds Seconds from a query's first client message to its ReadyForQuery, including any wait for a backend connection.
# TYPE pgbridge_query_duration_seconds histogram
pgbridge_query_duration_seconds_bucket{tenant="acme",le="0.01"} 70
pgbridge_query_duration_seconds_bucket{tenant="acme",le="0.1"} 95
pgbridge_query_duration_seconds_bucket{tenant="acme",le="1"} 99
pgbridge_query_duration_seconds_bucket{tenant="acme",le="+Inf"} 100
pgbridge_query_duration_seconds_sum{tenant="acme"} 3.5
pgbridge_query_duration_seconds_count{tenant="acme"} 100
pgbridge_query_duration_seconds_bucket{tenant="globex",le="0.01"} 5
pgbridge_query_duration_seconds_bucket{tenant="globex",le="0.1"} 5
pgbridge_query_duration_seconds_bucket{tenant="globex",le="1"} 5
pgbridge_query_duration_seconds_bucket{tenant="globex",le="+Inf"} 5
pgbridge_query_duration_seconds_sum{tenant="globex"} 0.01
pgbridge_query_duration_seconds_count{tenant="globex"} 5
# HELP pgbridge_pool_wait_seconds Seconds a transaction waited for a backend connection from the tenant's pool.
# TYPE pgbridge_pool_wait_seconds histogram
pgbridge_pool_wait_seconds_bucket{tenant="acme",le="0.01"} 9
pgbridge_pool_wait_seconds_bucket{tenant="acme",le="0.1"} 10
pgbridge_pool_wait_seconds_bucket{tenant="acme",le="1"} 10
pgbridge_pool_wait_seconds_bucket{tenant="acme",le="+Inf"} 10
pgbridge_pool_wait_seconds_sum{tenant="acme"} 0.05
pgbridge_pool_wait_seconds_count{tenant="acme"} 10
pgbridge_pool_wait_seconds_bucket{tenant="globex",le="0.01"} 0
pgbridge_pool_wait_seconds_bucket{tenant="globex",le="0.1"} 0
pgbridge_pool_wait_seconds_bucket{tenant="globex",le="1"} 0
pgbridge_pool_wait_seconds_bucket{tenant="globex",le="+Inf"} 0
pgbridge_pool_wait_seconds_sum{tenant="globex"} 0
pgbridge_pool_wait_seconds_count{tenant="globex"} 0
# HELP pgbridge_client_rejections_total Logins, queries and messages the router refused, by reason (see docs/observability.md).
# TYPE pgbridge_client_rejections_total counter
pgbridge_client_rejections_total{reason="client_cap",tenant="acme"} 0
pgbridge_client_rejections_total{reason="global_cap",tenant="acme"} 0
pgbridge_client_rejections_total{reason="pool_timeout",tenant="acme"} 3
pgbridge_client_rejections_total{reason="rate_limit",tenant="acme"} 7
pgbridge_client_rejections_total{reason="connection_rate",tenant="acme"} 0
pgbridge_client_rejections_total{reason="auth_failed",tenant="acme"} 0
pgbridge_client_rejections_total{reason="database_mismatch",tenant="acme"} 0
pgbridge_client_rejections_total{reason="login_throttled",tenant="acme"} 0
pgbridge_client_rejections_total{reason="message_too_large",tenant="acme"} 0
pgbridge_client_rejections_total{reason="client_cap",tenant="globex"} 2
pgbridge_client_rejections_total{reason="global_cap",tenant="globex"} 0
pgbridge_client_rejections_total{reason="pool_timeout",tenant="globex"} 0
pgbridge_client_rejections_total{reason="rate_limit",tenant="globex"} 0
pgbridge_client_rejections_total{reason="connection_rate",tenant="globex"} 0
pgbridge_client_rejections_total{reason="auth_failed",tenant="globex"} 0
pgbridge_client_rejections_total{reason="database_mismatch",tenant="globex"} 0
pgbridge_client_rejections_total{reason="login_throttled",tenant="globex"} 0
pgbridge_client_rejections_total{reason="message_too_large",tenant="globex"} 0
pgbridge_client_rejections_total{reason="some_future_reason",tenant="globex"} 1
# HELP pgbridge_cancels_total Statements cancelled: reason client is a client CancelRequest, statement_timeout the router's hard cap, session_end a statement still running when its session ended.
# TYPE pgbridge_cancels_total counter
pgbridge_cancels_total{reason="client",tenant="acme"} 2
pgbridge_cancels_total{reason="session_end",tenant="acme"} 0
pgbridge_cancels_total{reason="statement_timeout",tenant="acme"} 0
pgbridge_cancels_total{reason="client",tenant="globex"} 0
pgbridge_cancels_total{reason="session_end",tenant="globex"} 0
pgbridge_cancels_total{reason="statement_timeout",tenant="globex"} 0
# HELP pgbridge_session_closes_total Client sessions the router ended, by reason.
# TYPE pgbridge_session_closes_total counter
pgbridge_session_closes_total{reason="idle_in_transaction",tenant="acme"} 1
pgbridge_session_closes_total{reason="client_idle",tenant="acme"} 0
pgbridge_session_closes_total{reason="drain",tenant="acme"} 0
pgbridge_session_closes_total{reason="tenant_removed",tenant="acme"} 0
pgbridge_session_closes_total{reason="killed",tenant="acme"} 0
pgbridge_session_closes_total{reason="backend_lost",tenant="acme"} 0
pgbridge_session_closes_total{reason="statement_timeout",tenant="acme"} 0
pgbridge_session_closes_total{reason="protocol_violation",tenant="acme"} 0
pgbridge_session_closes_total{reason="idle_in_transaction",tenant="globex"} 0
pgbridge_session_closes_total{reason="client_idle",tenant="globex"} 0
pgbridge_session_closes_total{reason="drain",tenant="globex"} 0
pgbridge_session_closes_total{reason="tenant_removed",tenant="globex"} 0
pgbridge_session_closes_total{reason="killed",tenant="globex"} 0
pgbridge_session_closes_total{reason="backend_lost",tenant="globex"} 0
pgbridge_session_closes_total{reason="statement_timeout",tenant="globex"} 0
pgbridge_session_closes_total{reason="protocol_violation",tenant="globex"} 0
# HELP pgbridge_pinned_sessions Client sessions pinned to their backend connection right now because of session state.
# TYPE pgbridge_pinned_sessions gauge
pgbridge_pinned_sessions{tenant="acme"} 1
pgbridge_pinned_sessions{tenant="globex"} 0
# HELP pgbridge_pins_total Client sessions that became pinned to their backend connection, by the statement kind that pinned them.
# TYPE pgbridge_pins_total counter
pgbridge_pins_total{reason="advisory_lock",tenant="acme"} 0
pgbridge_pins_total{reason="advisory_lock",tenant="globex"} 0
pgbridge_pins_total{reason="copy_sync",tenant="acme"} 0
pgbridge_pins_total{reason="copy_sync",tenant="globex"} 0
pgbridge_pins_total{reason="function_call",tenant="acme"} 0
pgbridge_pins_total{reason="function_call",tenant="globex"} 0
pgbridge_pins_total{reason="hold_cursor",tenant="acme"} 0
pgbridge_pins_total{reason="hold_cursor",tenant="globex"} 0
pgbridge_pins_total{reason="listen",tenant="acme"} 0
pgbridge_pins_total{reason="listen",tenant="globex"} 0
pgbridge_pins_total{reason="load",tenant="acme"} 0
pgbridge_pins_total{reason="load",tenant="globex"} 0
pgbridge_pins_total{reason="prepare",tenant="acme"} 0
pgbridge_pins_total{reason="prepare",tenant="globex"} 0
pgbridge_pins_total{reason="set",tenant="acme"} 4
pgbridge_pins_total{reason="set",tenant="globex"} 0
pgbridge_pins_total{reason="temp_table",tenant="acme"} 0
pgbridge_pins_total{reason="temp_table",tenant="globex"} 0
# HELP pgbridge_tenant_paused 1 while the tenant is paused from the admin console, else 0 (without tenant labels: the number of paused tenants).
# TYPE pgbridge_tenant_paused gauge
pgbridge_tenant_paused{tenant="acme"} 0
pgbridge_tenant_paused{tenant="globex"} 1
# HELP pgbridge_errors_total Errors the backend returned to clients, by SQLSTATE class (the first two characters of the code).
# TYPE pgbridge_errors_total counter
pgbridge_errors_total{class="23",tenant="acme"} 2
# HELP pgbridge_backend_connects_total Dials to the backend cluster by result (ok or error), every retry counted.
# TYPE pgbridge_backend_connects_total counter
pgbridge_backend_connects_total{result="ok"} 6
pgbridge_backend_connects_total{result="error"} 1
# HELP pgbridge_backend_connect_seconds Seconds one dial to the backend cluster took, through authentication, failed dials included.
# TYPE pgbridge_backend_connect_seconds histogram
pgbridge_backend_connect_seconds_bucket{le="0.01"} 5
pgbridge_backend_connect_seconds_bucket{le="0.1"} 6
pgbridge_backend_connect_seconds_bucket{le="1"} 6
pgbridge_backend_connect_seconds_bucket{le="+Inf"} 7
pgbridge_backend_connect_seconds_sum 2.2
pgbridge_backend_connect_seconds_count 7
# HELP pgbridge_backend_budget The backend connection budget shared by all tenants: in_use handed to sessions or being dialed, idle pooled, limit backend.max_connections.
# TYPE pgbridge_backend_budget gauge
pgbridge_backend_budget{state="in_use"} 2
pgbridge_backend_budget{state="idle"} 4
pgbridge_backend_budget{state="limit"} 10
# HELP pgbridge_active_transactions Transactions under backend.max_active_transactions: active counted over all transaction-mode tenants (admitted and not waiting for their client), waiting queued for admission, limit the setting (0: no limit, nothing counted).
# TYPE pgbridge_active_transactions gauge
pgbridge_active_transactions{state="active"} 3
pgbridge_active_transactions{state="waiting"} 1
pgbridge_active_transactions{state="limit"} 4
# HELP pgbridge_config_last_reload_successful 1 if the last configuration load succeeded, 0 if it failed and the previous configuration still serves.
# TYPE pgbridge_config_last_reload_successful gauge
pgbridge_config_last_reload_successful 0
# HELP pgbridge_config_last_reload_success_timestamp_seconds Unix time in seconds of the last successful configuration load (startup counts).
# TYPE pgbridge_config_last_reload_success_timestamp_seconds gauge
pgbridge_config_last_reload_success_timestamp_seconds 1.7000000005e+09
`
	// Every family but build_info, whose goversion label depends on the
	// toolchain; it is checked below.
	var names []string
	for _, mf := range mustGather(t, reg) {
		if mf != "pgbridge_build_info" {
			names = append(names, mf)
		}
	}
	if len(names) != 20 {
		t.Errorf("%d families besides build_info, want 20: %v", len(names), names)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	info := valueMap(gatherSeries(t, reg))
	key := `pgbridge_build_info{goversion="` + runtime.Version() + `",version="v1.2.3"}`
	if v, ok := info[key]; !ok || v != 1 {
		t.Errorf("%s = %v (present %v), want 1", key, v, ok)
	}
}

func mustGather(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	return names
}

func TestOneSourceCallPerScrape(t *testing.T) {
	for _, labels := range []bool{true, false} {
		src := newSource(sampleLike())
		reg := pedantic(t, newCollector(src.get, labels, "v"))
		mustGather(t, reg)
		if src.calls != 1 {
			t.Errorf("tenantLabels=%v: Source called %d times in one scrape, want 1", labels, src.calls)
		}
	}
}

func TestRemovedTenantVanishes(t *testing.T) {
	src := newSource(twoTenants())
	reg := pedantic(t, newCollector(src.get, true, "v"))
	count := func() (acme, globex int) {
		for _, s := range gatherSeries(t, reg) {
			switch s.labels["tenant"] {
			case "acme":
				acme++
			case "globex":
				globex++
			}
		}
		return
	}
	acme, globex := count()
	if acme == 0 || globex == 0 {
		t.Fatalf("before removal: acme %d series, globex %d", acme, globex)
	}
	snap := twoTenants()
	snap.Tenants = snap.Tenants[:1]
	src.set(snap)
	acme2, globex2 := count()
	if globex2 != 0 {
		t.Errorf("globex still has %d series after it left the snapshot", globex2)
	}
	if acme2 != acme {
		t.Errorf("acme has %d series, had %d", acme2, acme)
	}
}

func TestReasonsPrepopulated(t *testing.T) {
	src := newSource(stats.Snapshot{Tenants: []stats.TenantSnapshot{{Name: "newco"}}})
	vals := valueMap(gatherSeries(t, pedantic(t, newCollector(src.get, true, "v"))))
	for metric, reasons := range map[string][]string{
		"pgbridge_client_rejections_total": rejectionReasons,
		"pgbridge_cancels_total":           cancelReasons,
		"pgbridge_session_closes_total":    closeReasons,
	} {
		for _, r := range reasons {
			key := metric + `{reason="` + r + `",tenant="newco"}`
			if v, ok := vals[key]; !ok || v != 0 {
				t.Errorf("%s = %v (present %v), want 0", key, v, ok)
			}
		}
	}
	for _, r := range connectResults {
		key := `pgbridge_backend_connects_total{result="` + r + `"}`
		if v, ok := vals[key]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", key, v, ok)
		}
	}
	// An empty histogram is exposed over the default buckets.
	key := `pgbridge_query_duration_seconds_bucket{le="60",tenant="newco"}`
	if _, ok := vals[key]; !ok {
		t.Errorf("%s missing", key)
	}
	if v := vals[`pgbridge_config_last_reload_success_timestamp_seconds{}`]; v != 0 {
		t.Errorf("reload timestamp of a zero time = %v, want 0", v)
	}
}

// TestReasonListsCoverStats keeps the pre-populated label values in step
// with the reason constants of internal/stats.
func TestReasonListsCoverStats(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../internal/stats/stats.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	lists := map[string][]string{
		"Reject":  rejectionReasons,
		"Cancel":  cancelReasons,
		"Close":   closeReasons,
		"Pin":     pinReasons,
		"Connect": connectResults,
	}
	found := map[string]int{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				value, _ := strconv.Unquote(lit.Value)
				prefix := ""
				for p := range lists {
					if strings.HasPrefix(name.Name, p) {
						prefix = p
					}
				}
				if prefix == "" {
					t.Errorf("stats.%s = %q: no list in metrics/collector.go for this kind of constant; add one so tenants get the series from the start", name.Name, value)
					continue
				}
				found[prefix]++
				if !slices.Contains(lists[prefix], value) {
					t.Errorf("stats.%s = %q is missing from the %s reasons in metrics/collector.go", name.Name, value, prefix)
				}
			}
		}
	}
	for p, l := range lists {
		if found[p] != len(l) {
			t.Errorf("%s reasons: metrics lists %d, internal/stats defines %d", p, len(l), found[p])
		}
	}
}

// hist observes ds into a live stats.Histogram, as the proxy would.
func hist(ds ...time.Duration) stats.HistogramSnapshot {
	var h stats.Histogram
	for _, d := range ds {
		h.Observe(d)
	}
	return h.Snapshot()
}

// sampleLike is twoTenants with default-bucket histograms, which folding
// needs.
func sampleLike() stats.Snapshot {
	s := twoTenants()
	s.Tenants[0].QueryDuration = hist(time.Millisecond, 2*time.Millisecond, 3*time.Second)
	s.Tenants[0].PoolWait = hist(time.Millisecond)
	s.Tenants[1].QueryDuration = hist(time.Millisecond)
	s.Tenants[1].PoolWait = stats.HistogramSnapshot{}
	s.BackendConnectSeconds = hist(10 * time.Millisecond)
	return s
}

func TestFolded(t *testing.T) {
	src := newSource(sampleLike())
	reg := pedantic(t, newCollector(src.get, false, "v"))
	vals := valueMap(gatherSeries(t, reg))
	for _, s := range gatherSeries(t, reg) {
		if tn, ok := s.labels["tenant"]; ok && tn != "" {
			t.Fatalf("folded series carries tenant %q: %s", tn, s.key())
		}
	}
	want := map[string]float64{
		`pgbridge_client_connections{state="active",tenant=""}`:                   2,
		`pgbridge_client_connections{state="idle",tenant=""}`:                     6,
		`pgbridge_client_connections{state="waiting",tenant=""}`:                  1,
		`pgbridge_server_connections{state="connecting",tenant=""}`:               1,
		`pgbridge_server_connections{state="idle",tenant=""}`:                     4,
		`pgbridge_queries_total{tenant=""}`:                                       125,
		`pgbridge_transactions_total{tenant=""}`:                                  105,
		`pgbridge_bytes_total{direction="in",tenant=""}`:                          4196,
		`pgbridge_bytes_total{direction="out",tenant=""}`:                         65736,
		`pgbridge_client_rejections_total{reason="pool_timeout",tenant=""}`:       3,
		`pgbridge_client_rejections_total{reason="rate_limit",tenant=""}`:         7,
		`pgbridge_client_rejections_total{reason="client_cap",tenant=""}`:         2,
		`pgbridge_client_rejections_total{reason="some_future_reason",tenant=""}`: 1,
		`pgbridge_cancels_total{reason="client",tenant=""}`:                       2,
		`pgbridge_pinned_sessions{tenant=""}`:                                     1,
		`pgbridge_tenant_paused{tenant=""}`:                                       1, // one paused tenant
		`pgbridge_query_duration_seconds_count{tenant=""}`:                        4,
		`pgbridge_query_duration_seconds_bucket{le="0.001",tenant=""}`:            2,
		`pgbridge_query_duration_seconds_bucket{le="0.0025",tenant=""}`:           3,
		`pgbridge_query_duration_seconds_bucket{le="+Inf",tenant=""}`:             4,
		`pgbridge_query_duration_seconds_sum{tenant=""}`:                          3.004,
		`pgbridge_pool_wait_seconds_count{tenant=""}`:                             1,
	}
	for k, w := range want {
		if got, ok := vals[k]; !ok || got != w {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, w)
		}
	}

	// globex leaves, acme keeps counting: the folded counters keep
	// globex's final counts and never go down.
	snap := sampleLike()
	snap.Tenants = snap.Tenants[:1]
	snap.Tenants[0].Queries = 130
	snap.Tenants[0].ClientsIdle = 5
	src.set(snap)
	vals = valueMap(gatherSeries(t, reg))
	for k, w := range map[string]float64{
		`pgbridge_queries_total{tenant=""}`:                               135,
		`pgbridge_client_rejections_total{reason="client_cap",tenant=""}`: 2,
		`pgbridge_query_duration_seconds_count{tenant=""}`:                4,
		`pgbridge_client_connections{state="idle",tenant=""}`:             5, // gauges are not kept
		`pgbridge_tenant_paused{tenant=""}`:                               0,
	} {
		if got := vals[k]; got != w {
			t.Errorf("after globex left: %s = %v, want %v", k, got, w)
		}
	}

	// globex comes back with fresh counters.
	snap = sampleLike()
	snap.Tenants[0].Queries = 130
	snap.Tenants[1].Queries = 1
	src.set(snap)
	vals = valueMap(gatherSeries(t, reg))
	if got := vals[`pgbridge_queries_total{tenant=""}`]; got != 136 {
		t.Errorf("after globex came back: queries = %v, want 136", got)
	}
}

func TestFoldedEmpty(t *testing.T) {
	reg := pedantic(t, newCollector(newSource(stats.Snapshot{}).get, false, "v"))
	vals := valueMap(gatherSeries(t, reg))
	if v, ok := vals[`pgbridge_queries_total{tenant=""}`]; !ok || v != 0 {
		t.Errorf("folded queries with no tenants = %v (present %v), want a 0 series", v, ok)
	}
}

func TestFoldedRejectsForeignBounds(t *testing.T) {
	// twoTenants uses bounds other than stats.DefaultBuckets, which
	// cannot be merged: the scrape reports it and still serves the rest.
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(newSource(twoTenants()).get, false, "v"))
	mfs, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "differ from stats.DefaultBuckets") {
		t.Fatalf("gather error = %v, want one about the bounds", err)
	}
	vals := valueMap(flatten(mfs))
	if _, ok := vals[`pgbridge_backend_budget{state="limit"}`]; !ok {
		t.Error("router-wide series missing after a tenant histogram failed")
	}
}

func TestConcurrentScrapes(t *testing.T) {
	for _, labels := range []bool{true, false} {
		src := newSource(sampleLike())
		reg := pedantic(t, newCollector(src.get, labels, "v"))
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 20 {
					if (i+j)%3 == 0 {
						snap := sampleLike()
						snap.Tenants = snap.Tenants[:1+j%2]
						src.set(snap)
					}
					if _, err := reg.Gather(); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
}
