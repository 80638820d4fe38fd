// Package report holds the results of one harness run and writes them out:
// a JSON file with every measurement, a Markdown report with one table and
// one SVG chart per scenario, and the charts themselves. Nothing here runs
// load; the harness and the load generator fill in the types.
package report

import (
	"time"
)

// Kinds of scenario; each has its own result type in Run.
const (
	KindPgbench = "pgbench" // pgbench against one tenant
	KindIdle    = "idle"    // many connected, idle clients
	KindStorm   = "storm"   // many clients connecting at once
	KindNoisy   = "noisy"   // one noisy tenant and quiet ones, per-tenant latency
)

// Target names as they appear in runs.
const (
	Direct    = "direct"
	PgBouncer = "pgbouncer"
	Pgbridge  = "pgbridge"
	// GoRelay is bench/cmd/gorelay: a byte relay in Go, the floor of what
	// a Go proxy built like pgbridge (a goroutine per connection) costs
	// (opt-in target).
	GoRelay = "gorelay"
	// GoRelayEpoll is the same relay on one epoll loop, the floor of a Go
	// proxy built like PgBouncer (opt-in target).
	GoRelayEpoll = "gorelay-epoll"
)

// Noisy-neighbour variants.
const (
	VariantBaseline = "baseline" // quiet tenants alone
	VariantNoisy    = "noisy"    // quiet tenants next to the noisy one
)

// Report is one harness run.
type Report struct {
	// Name is the base name of the output files: <date>-<host>, with
	// "-quick" appended for quick runs.
	Name     string    `json:"name"`
	Mode     string    `json:"mode"` // "full" or "quick"
	Host     string    `json:"host"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Interrupted says why the run stopped before its last scenario
	// (Ctrl-C, the overall time limit); empty for a complete run.
	Interrupted string     `json:"interrupted,omitempty"`
	Machine     Machine    `json:"machine"`
	Settings    Settings   `json:"settings"`
	Targets     []string   `json:"targets"` // in the order each round runs them
	Scenarios   []Scenario `json:"scenarios"`
	Notes       []string   `json:"notes,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs           int    `json:"cpus"`
	CPUModel       string `json:"cpu_model,omitempty"`
	MemoryMiB      int64  `json:"memory_mib,omitempty"`
	Kernel         string `json:"kernel,omitempty"`
	Go             string `json:"go"`
	Postgres       string `json:"postgres,omitempty"`
	Pgbench        string `json:"pgbench,omitempty"`
	PgBouncer      string `json:"pgbouncer,omitempty"`
	PgbridgeCommit string `json:"pgbridge_commit,omitempty"`
	LoadAverage    string `json:"load_average,omitempty"` // /proc/loadavg when the run started
}

// Settings are the knobs the run used.
type Settings struct {
	Tenants      int     `json:"tenants"`
	PoolSize     int     `json:"pool_size"` // per tenant, both proxies
	RunSeconds   float64 `json:"run_seconds"`
	Rounds       int     `json:"rounds"`
	PgbenchScale int     `json:"pgbench_scale"`
	SamplingRate float64 `json:"pgbench_sampling_rate"` // share of transactions logged for percentiles
}

// Scenario is one workload, run against every target for every round.
type Scenario struct {
	Name     string `json:"name"` // short id, also the chart's file name
	Title    string `json:"title"`
	Kind     string `json:"kind"`
	Command  string `json:"command"`  // what ran, for the reader
	Measures string `json:"measures"` // what the scenario tells
	// Goal is issue 7's target for pgbridge in this scenario, if it has
	// one; Evaluate fills in whether the runs met it.
	Goal *Goal `json:"goal,omitempty"`
	// Unsupported maps a target to the reason it cannot run this scenario.
	Unsupported map[string]string `json:"unsupported,omitempty"`
	// Differs maps a target to how it ran differently here from the
	// other scenarios (PgBouncer in session mode, say); shown under the
	// table.
	Differs map[string]string `json:"differs,omitempty"`
	// NotApplicable maps a target to the reason the scenario does not
	// apply to it (shown as n/a).
	NotApplicable map[string]string `json:"not_applicable,omitempty"`
	Runs          []Run             `json:"runs"`
	// Chart is the SVG file, relative to the Markdown report.
	Chart string `json:"chart,omitempty"`
}

// Goal is a target pgbridge should reach in a scenario, stated on the
// scenario's headline value (see Headline).
type Goal struct {
	Text string `json:"text"`
	// Versus and MinRatio: pgbridge's headline value divided by Versus's
	// must be at least MinRatio.
	Versus   string  `json:"versus,omitempty"`
	MinRatio float64 `json:"min_ratio,omitempty"`
	// Max: pgbridge's headline value must be at most Max.
	Max float64 `json:"max,omitempty"`
	// CPUVersus: pgbridge's proxy CPU per operation must also be at most
	// that target's.
	CPUVersus string `json:"cpu_versus,omitempty"`

	// Met and Detail are set by Evaluate; Met stays nil when the runs do
	// not allow a verdict (a target failed or is missing).
	Met    *bool  `json:"met,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Run is one target in one round of a scenario.
type Run struct {
	Target  string `json:"target"`
	Round   int    `json:"round"`
	Variant string `json:"variant,omitempty"` // noisy scenario: baseline or noisy
	// Error says why the run produced no measurement.
	Error string `json:"error,omitempty"`

	Pgbench *PgbenchResult `json:"pgbench,omitempty"`
	Idle    *IdleResult    `json:"idle,omitempty"`
	Storm   *StormResult   `json:"storm,omitempty"`
	Noisy   *NoisyResult   `json:"noisy,omitempty"`
	// Proxy is the resource use of the proxy process during the run (nil
	// for direct).
	Proxy *ProxyUsage `json:"proxy,omitempty"`
}

// PgbenchResult is what one pgbench run reported.
type PgbenchResult struct {
	TPS          float64 `json:"tps"`
	Transactions int64   `json:"transactions"`
	Failed       int64   `json:"failed"`          // "number of failed transactions"
	Aborted      int     `json:"aborted_clients"` // clients that stopped on an error
	FirstError   string  `json:"first_error,omitempty"`
	LatencyAvgMs float64 `json:"latency_avg_ms"`
	ConnTimeMs   float64 `json:"conn_time_ms"` // initial (or average, with -C) connection time
	// Latency is computed from pgbench's per-transaction log (sampled).
	Latency Latency `json:"latency"`
}

// Errors counts failed transactions and aborted clients.
func (p *PgbenchResult) Errors() int64 { return p.Failed + int64(p.Aborted) }

// IdleResult is one idle-clients run.
type IdleResult struct {
	Clients        int     `json:"clients"`
	Connected      int     `json:"connected"`
	Errors         int     `json:"errors"`
	FirstError     string  `json:"first_error,omitempty"`
	ConnectSeconds float64 `json:"connect_seconds"` // until every client had logged in and run one query
	// MemoryPerClientKiB is the memory the clients cost the server side:
	// the proxy's RSS growth, or for direct the PSS growth of PostgreSQL's
	// backends, divided by the clients connected. MemorySource says which.
	MemoryPerClientKiB float64 `json:"memory_per_client_kib"`
	MemorySource       string  `json:"memory_source,omitempty"`
	MemoryBeforeKiB    int64   `json:"memory_before_kib"`
	MemoryWithKiB      int64   `json:"memory_with_clients_kib"`
}

// StormResult is one connection-storm run.
type StormResult struct {
	Clients    int    `json:"clients"`
	Connected  int    `json:"connected"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// AllConnectedSeconds is the time from the start signal until the last
	// client finished logging in; AllQueriedSeconds until the last client
	// got the answer to its first query.
	AllConnectedSeconds float64 `json:"all_connected_seconds"`
	AllQueriedSeconds   float64 `json:"all_queried_seconds"`
	Connect             Latency `json:"connect"`
	FirstQuery          Latency `json:"first_query"`
}

// NoisyResult is one noisy-neighbour run: one entry per tenant.
type NoisyResult struct {
	Seconds float64        `json:"seconds"`
	Tenants []TenantResult `json:"tenants"`
}

// Roles of tenants in the noisy-neighbour scenario.
const (
	RoleNoisy = "noisy"
	RoleQuiet = "quiet"
)

// TenantResult is one tenant's side of a noisy-neighbour run.
type TenantResult struct {
	Tenant     string  `json:"tenant"`
	Role       string  `json:"role"`
	Clients    int     `json:"clients"`
	Queries    int64   `json:"queries"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	QPS        float64 `json:"qps"`
	// Latency of successful queries. For quiet tenants it runs from the
	// moment the query was due (they run at a fixed rate), so a query that
	// had to wait for the previous one counts the wait too.
	Latency Latency `json:"latency"`
}

// ProxyUsage is what the proxy process used during one run.
type ProxyUsage struct {
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_seconds"` // user + system
	// CPUPerOpMicros is CPUSeconds per transaction (or per login in the
	// storm scenario), in microseconds; 0 when there were none.
	CPUPerOpMicros float64 `json:"cpu_per_op_us"`
	// PeakRSSKiB is VmHWM: the peak resident set during the run when the
	// harness could reset it beforehand, else since the process started.
	PeakRSSKiB    int64 `json:"peak_rss_kib"`
	PeakSinceRun  bool  `json:"peak_since_run"`
	RSSAtStartKiB int64 `json:"rss_at_start_kib"`
}
