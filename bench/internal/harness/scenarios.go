package harness

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pgbridge/pgbridge/bench/internal/report"
)

// scenario is one workload: its description for the report and what to
// run.
type scenario struct {
	meta report.Scenario // Runs stays empty here
	// fullOnly scenarios are left out of quick runs unless asked for by
	// name, to keep those under two minutes.
	fullOnly bool

	pgbench     *pgbenchSpec // KindPgbench
	idleClients int          // KindIdle
	// unsupported and notApplicable return why a target does not run the
	// scenario, or "".
	unsupported   func(target string) string
	notApplicable func(target string) string
	// bouncerSession runs PgBouncer in session mode: the reference for
	// prepared statements when PgBouncer cannot keep them in transaction
	// mode.
	bouncerSession bool
	// maxActive, when above 0, is pgbridge's
	// backend.max_active_transactions.
	maxActive int
}

// pgbenchSpec is one pgbench workload against the first tenant.
type pgbenchSpec struct {
	args         []string // workload options: -S, -M mode, -C
	clients      int
	threads      int
	samplingRate float64 // 0: the run's default
	// minSeconds is the shortest run that makes sense: pgbench's -T
	// includes the time its clients take to log in, and 400 SCRAM logins
	// take pgbench (libpq derives the SCRAM keys for every connection)
	// several seconds of CPU on two cores, whatever the target.
	minSeconds int
}

// seconds is the -T of the spec's runs.
func (p *pgbenchSpec) seconds(o *Options) int { return max(o.pgbenchSeconds(), p.minSeconds) }

// command is the pgbench command line, for the report.
func (p *pgbenchSpec) command(o *Options, rate float64) string {
	seconds := p.seconds(o)
	a := append([]string{"pgbench"}, p.args...)
	a = append(a, "-c", strconv.Itoa(p.clients), "-j", strconv.Itoa(p.threads), "-T", strconv.Itoa(seconds), "-n")
	if rate < 1 {
		a = append(a, "-l", "--sampling-rate="+strconv.FormatFloat(rate, 'g', -1, 64))
	} else {
		a = append(a, "-l")
	}
	return strings.Join(a, " ")
}

// scenarios lists every scenario of the run, in report order.
func (e *env) scenarios() []scenario {
	o := e.opts
	pg := func(name, title, measures string, spec pgbenchSpec, goal *report.Goal) scenario {
		rate := o.SamplingRate
		if spec.samplingRate > 0 {
			rate = spec.samplingRate
		}
		return scenario{
			meta: report.Scenario{
				Name: name, Title: title, Kind: report.KindPgbench, Measures: measures, Goal: goal,
				Command: spec.command(&o, rate) + " (against the first tenant)",
			},
			pgbench: &spec,
		}
	}
	selectOnly := func(mode string, clients int) scenario {
		threads := min(clients, 2)
		spec := pgbenchSpec{args: []string{"-S", "-M", mode}, clients: clients, threads: threads}
		name := fmt.Sprintf("select-%s-c%d", mode, clients)
		title := fmt.Sprintf("select-only, %s protocol, %d client", mode, clients)
		if clients > 1 {
			title += "s"
		}
		var measures string
		switch mode {
		case "simple":
			measures = "The cost a proxy adds to the smallest query: one Query message, one row back."
		case "extended":
			measures = "The same query with the extended protocol and an unnamed statement (Parse, Bind, Execute, Sync on every query), as most drivers send it."
		case "prepared":
			measures = "Named prepared statements, parsed once per client: in transaction mode the proxy must track them and prepare them on whichever backend serves the client."
		}
		if clients == 1 {
			measures += " One client: pure round-trip latency, no concurrency."
		} else {
			measures += fmt.Sprintf(" %d clients keep every core busy.", clients)
		}
		var goal *report.Goal
		switch {
		case clients == 16 && mode == "simple":
			goal = &report.Goal{Text: ">= 1.0x PgBouncer tps, CPU per query <= PgBouncer's", Versus: report.PgBouncer, MinRatio: 1, CPUVersus: report.PgBouncer}
		case clients == 16 && mode == "extended":
			goal = &report.Goal{Text: ">= 1.0x PgBouncer tps", Versus: report.PgBouncer, MinRatio: 1}
		case clients == 16 && mode == "prepared":
			goal = &report.Goal{Text: ">= 0.7x direct tps", Versus: report.Direct, MinRatio: 0.7}
		}
		s := pg(name, title, measures, spec, goal)
		s.fullOnly = clients == 1
		if mode == "prepared" && !e.bouncerPrepared {
			// The best PgBouncer can do with named prepared statements:
			// one backend per client for the whole session. No pooling,
			// so it bounds from above what a C proxy costs per query.
			s.bouncerSession = true
			mapSet(&s.meta.Differs, report.PgBouncer, "session mode (a backend per client, no pooling): PgBouncer "+
				e.bouncerVersion+" cannot keep prepared statements in transaction mode (1.21 added max_prepared_statements)")
		}
		return s
	}

	var list []scenario
	for _, mode := range []string{"simple", "extended", "prepared"} {
		for _, c := range []int{1, 16} {
			list = append(list, selectOnly(mode, c))
		}
	}
	list = append(list,
		pg("tpcb-c16", "TPC-B-like mix, 16 clients",
			"pgbench's default transaction: BEGIN, three UPDATEs, a SELECT and an INSERT, COMMIT. Longer transactions with row locks; the proxy's share of the work is smaller.",
			pgbenchSpec{args: []string{"-M", "simple"}, clients: 16, threads: 2}, nil),
		pg("select-c400-pool20", fmt.Sprintf("select-only, 400 clients on a pool of %d", o.PoolSize),
			fmt.Sprintf("400 clients share %d backend connections through the proxies, while direct runs 400 PostgreSQL backends that compete for 2 cores.", o.PoolSize),
			pgbenchSpec{args: []string{"-S", "-M", "simple"}, clients: 400, threads: 2, minSeconds: 8},
			&report.Goal{Text: ">= 1.1x direct tps", Versus: report.Direct, MinRatio: 1.1}),
		pg("connect-per-txn", "new connection per transaction",
			"pgbench -C opens a connection (with a SCRAM login) for every transaction, like short-lived scripts and serverless functions: PostgreSQL forks a backend for each, a proxy reuses its pool.",
			pgbenchSpec{args: []string{"-S", "-M", "simple", "-C"}, clients: 16, threads: 2, samplingRate: 1},
			&report.Goal{Text: ">= 1.5x direct tps", Versus: report.Direct, MinRatio: 1.5}),
	)
	for _, n := range o.IdleClients {
		s := scenario{
			meta: report.Scenario{
				Name:  fmt.Sprintf("idle-%d", n),
				Title: fmt.Sprintf("%s idle clients", report.FormatNumber(float64(n))),
				Kind:  report.KindIdle,
				Command: fmt.Sprintf("loadgen idle: %d clients spread over the %d tenants log in (%d at a time), run SELECT 1 once and stay connected",
					n, len(e.tenants), o.IdleParallel),
				Measures: "What an idle client costs the server side: the proxy's resident memory growth divided by the clients " +
					"(for direct, the growth of PostgreSQL's backends' proportional memory), measured once all are connected and idle.",
			},
			idleClients: n,
		}
		if n >= 10000 {
			s.meta.Goal = &report.Goal{Text: "<= 10 KiB of router memory per idle client", Max: 10}
		}
		s.notApplicable = func(t string) string {
			switch {
			case t == report.GoRelay || t == report.GoRelayEpoll:
				return "it gives every client a backend of its own: its memory says nothing about holding idle clients"
			case t == report.Direct && n > o.DirectMaxClients:
				return fmt.Sprintf("PostgreSQL runs one process per connection; this run allows %d", o.DirectMaxClients)
			}
			return ""
		}
		list = append(list, s)
	}
	noisy := scenario{meta: report.Scenario{
		Name: "noisy-neighbour", Title: "noisy neighbour", Kind: report.KindNoisy,
		Command: fmt.Sprintf("loadgen noisy: %s runs %d clients at full speed; each other tenant runs %d clients at %g queries/s in total, in a second loadgen process; baseline: the quiet tenants alone (pgx, pgbench's select-only query)",
			e.tenants[0].Name, o.NoisyClients, o.QuietClients, o.QuietRate),
		Measures: "Whether one tenant at full speed hurts the others: each quiet tenant's latency with the noisy tenant running, against the same tenants alone through the same target.",
		Goal:     &report.Goal{Text: "quiet tenants' p99 within 2x of their p99 alone", Max: 2},
	}}
	if o.MaxActive > 0 {
		// The setting that exists for this case. It stays off elsewhere:
		// it limits transactions, not statements, and multi-statement
		// transactions (TPC-B) need more of them in flight than this.
		noisy.maxActive = o.MaxActive
		mapSet(&noisy.meta.Differs, report.Pgbridge, fmt.Sprintf(
			"backend.max_active_transactions: %d (twice the CPUs unless -max-active says otherwise); the other scenarios run without it", o.MaxActive))
	}
	list = append(list,
		noisy,
		scenario{meta: report.Scenario{
			Name: fmt.Sprintf("storm-%d", o.StormClients), Title: fmt.Sprintf("connection storm, %d clients", o.StormClients), Kind: report.KindStorm,
			Command:  fmt.Sprintf("loadgen storm: %d clients spread over the tenants connect at the same instant, each runs SELECT 1, all stay connected until the last is done", o.StormClients),
			Measures: "A fleet of application servers restarting at once: how long until every client is logged in and served, and whether any is refused.",
		}},
	)
	return list
}
