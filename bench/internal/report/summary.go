package report

import (
	"fmt"
	"math"
	"slices"
)

// Row is one target's results in one scenario, folded over the rounds:
// medians of the rounds for rates, latencies and CPU, sums for errors, the
// maximum for peak memory.
type Row struct {
	Target        string
	Unsupported   string // why the target cannot run the scenario
	NotApplicable string // why the scenario does not apply to the target
	Failed        string // every round failed: the first error
	Rounds        int    // rounds with a measurement
	FailedRuns    int    // rounds that produced no measurement

	Errors     int64
	FirstError string
	CPUPerOp   float64 // µs, median over rounds; 0 = not measured
	PeakRSSKiB int64   // max over rounds; 0 = not measured

	// pgbench
	TPS      float64
	TPSRuns  []float64
	P50, P99 float64

	// idle
	Connected       int
	ConnectSeconds  float64
	MemPerClientKiB float64
	MemSource       string

	// storm
	AllConnectedSeconds float64
	AllQueriedSeconds   float64
	ConnectP50          float64
	ConnectP99          float64
	FirstQueryP99       float64

	// noisy: the worst quiet tenant (highest p99), alone and with the
	// noisy one; P99Ratio is the highest ratio of a quiet tenant's p99 with
	// noise to its p99 alone.
	QuietBaseP50, QuietBaseP99   float64
	QuietNoisyP50, QuietNoisyP99 float64
	P99Ratio                     float64
	NoisyQPS                     float64 // the noisy tenant's throughput
	Tenants                      []TenantRow
}

// TenantRow is one tenant of the noisy-neighbour scenario through one
// target, medians over the rounds.
type TenantRow struct {
	Tenant             string
	Role               string
	Clients            int
	BaseQPS, NoisyQPS  float64
	BaseP50, BaseP99   float64
	NoisyP50, NoisyP99 float64
	Ratio              float64 // NoisyP99 / BaseP99; 0 when unknown
	Errors             int64
	FirstError         string
}

// Rows folds the scenario's runs into one row per target, in the order of
// targets.
func (s *Scenario) Rows(targets []string) []Row {
	rows := make([]Row, 0, len(targets))
	for _, t := range targets {
		row := Row{Target: t, Unsupported: s.Unsupported[t], NotApplicable: s.NotApplicable[t]}
		var runs []Run
		for _, r := range s.Runs {
			if r.Target != t {
				continue
			}
			if r.Error != "" {
				if row.FirstError == "" {
					row.FirstError = r.Error
				}
				row.FailedRuns++
				continue
			}
			runs = append(runs, r)
		}
		if len(runs) == 0 && row.FirstError != "" {
			row.Failed = row.FirstError
		}
		s.fold(&row, runs)
		rows = append(rows, row)
	}
	return rows
}

func (s *Scenario) fold(row *Row, runs []Run) {
	var cpu []float64
	for _, r := range runs {
		if p := r.Proxy; p != nil {
			// A noisy-neighbour baseline runs a few queries per second:
			// its CPU per query is mostly the proxy's idle overhead.
			if p.CPUPerOpMicros > 0 && r.Variant != VariantBaseline {
				cpu = append(cpu, p.CPUPerOpMicros)
			}
			row.PeakRSSKiB = max(row.PeakRSSKiB, p.PeakRSSKiB)
		}
	}
	row.CPUPerOp = Median(cpu)
	firstErr := func(e string) {
		if row.FirstError == "" {
			row.FirstError = e
		}
	}
	switch s.Kind {
	case KindPgbench:
		var p50, p99 []float64
		for _, r := range runs {
			if r.Pgbench == nil {
				continue
			}
			row.Rounds++
			row.TPSRuns = append(row.TPSRuns, r.Pgbench.TPS)
			p50 = append(p50, r.Pgbench.Latency.P50)
			p99 = append(p99, r.Pgbench.Latency.P99)
			row.Errors += r.Pgbench.Errors()
			firstErr(r.Pgbench.FirstError)
		}
		row.TPS, row.P50, row.P99 = Median(row.TPSRuns), Median(p50), Median(p99)
	case KindIdle:
		var secs, mem []float64
		for _, r := range runs {
			if r.Idle == nil {
				continue
			}
			row.Rounds++
			row.Connected = max(row.Connected, r.Idle.Connected)
			row.Errors += int64(r.Idle.Errors)
			firstErr(r.Idle.FirstError)
			secs = append(secs, r.Idle.ConnectSeconds)
			if r.Idle.MemorySource != "" {
				mem = append(mem, r.Idle.MemoryPerClientKiB)
				row.MemSource = r.Idle.MemorySource
			}
		}
		row.ConnectSeconds, row.MemPerClientKiB = Median(secs), Median(mem)
	case KindStorm:
		var all, queried, c50, c99, q99 []float64
		for _, r := range runs {
			if r.Storm == nil {
				continue
			}
			row.Rounds++
			st := r.Storm
			row.Connected = max(row.Connected, st.Connected)
			row.Errors += int64(st.Errors)
			firstErr(st.FirstError)
			all = append(all, st.AllConnectedSeconds)
			queried = append(queried, st.AllQueriedSeconds)
			c50 = append(c50, st.Connect.P50)
			c99 = append(c99, st.Connect.P99)
			q99 = append(q99, st.FirstQuery.P99)
		}
		row.AllConnectedSeconds, row.AllQueriedSeconds = Median(all), Median(queried)
		row.ConnectP50, row.ConnectP99, row.FirstQueryP99 = Median(c50), Median(c99), Median(q99)
	case KindNoisy:
		s.foldNoisy(row, runs)
	}
}

func (s *Scenario) foldNoisy(row *Row, runs []Run) {
	type acc struct {
		role                           string
		clients                        int
		bQPS, nQPS, b50, b99, n50, n99 []float64
		errors                         int64
		firstErr                       string
	}
	byTenant := map[string]*acc{}
	var order []string
	rounds := map[int]bool{}
	for _, r := range runs {
		if r.Noisy == nil {
			continue
		}
		rounds[r.Round] = true
		for _, t := range r.Noisy.Tenants {
			a := byTenant[t.Tenant]
			if a == nil {
				a = &acc{}
				byTenant[t.Tenant] = a
				order = append(order, t.Tenant)
			}
			if r.Variant == VariantNoisy || a.role == "" {
				a.role = t.Role // a tenant's role is the one it has with noise
			}
			a.clients = max(a.clients, t.Clients)
			a.errors += t.Errors
			if a.firstErr == "" {
				a.firstErr = t.FirstError
			}
			if row.FirstError == "" {
				row.FirstError = t.FirstError
			}
			row.Errors += t.Errors
			if r.Variant == VariantBaseline {
				a.bQPS = append(a.bQPS, t.QPS)
				a.b50 = append(a.b50, t.Latency.P50)
				a.b99 = append(a.b99, t.Latency.P99)
			} else {
				a.nQPS = append(a.nQPS, t.QPS)
				a.n50 = append(a.n50, t.Latency.P50)
				a.n99 = append(a.n99, t.Latency.P99)
			}
		}
	}
	row.Rounds = len(rounds)
	slices.Sort(order)
	for _, name := range order {
		a := byTenant[name]
		tr := TenantRow{
			Tenant: name, Role: a.role, Clients: a.clients,
			BaseQPS: Median(a.bQPS), NoisyQPS: Median(a.nQPS),
			BaseP50: Median(a.b50), BaseP99: Median(a.b99),
			NoisyP50: Median(a.n50), NoisyP99: Median(a.n99),
			Errors: a.errors, FirstError: a.firstErr,
		}
		if tr.BaseP99 > 0 && len(a.n99) > 0 {
			tr.Ratio = tr.NoisyP99 / tr.BaseP99
		}
		row.Tenants = append(row.Tenants, tr)
		if tr.Role == RoleNoisy {
			row.NoisyQPS = tr.NoisyQPS
			continue
		}
		if tr.BaseP99 > row.QuietBaseP99 {
			row.QuietBaseP50, row.QuietBaseP99 = tr.BaseP50, tr.BaseP99
		}
		if tr.NoisyP99 > row.QuietNoisyP99 {
			row.QuietNoisyP50, row.QuietNoisyP99 = tr.NoisyP50, tr.NoisyP99
		}
		row.P99Ratio = max(row.P99Ratio, tr.Ratio)
	}
}

// Headline is the one number that sums a scenario up for a target, with
// its unit and whether higher is better. ok is false when the row has no
// such number (unsupported, failed, not run).
func (s *Scenario) Headline(row Row) (v float64, ok bool) {
	if row.Unsupported != "" || row.NotApplicable != "" || row.Failed != "" || row.Rounds == 0 {
		return 0, false
	}
	switch s.Kind {
	case KindPgbench:
		return row.TPS, true
	case KindIdle:
		return row.MemPerClientKiB, row.MemSource != ""
	case KindStorm:
		return row.AllConnectedSeconds, row.Connected > 0
	case KindNoisy:
		return row.P99Ratio, row.P99Ratio > 0
	}
	return 0, false
}

// HeadlineName names the headline value of the scenario's kind.
func HeadlineName(kind string) (name, unit string, higherIsBetter bool) {
	switch kind {
	case KindPgbench:
		return "throughput", "tps", true
	case KindIdle:
		return "memory per idle client", "KiB", false
	case KindStorm:
		return "time until all connected", "s", false
	case KindNoisy:
		return "quiet tenants' p99, with noise / alone", "x", false
	}
	return kind, "", true
}

// Evaluate decides whether the scenario met its goal, from its rows.
func (s *Scenario) Evaluate(targets []string) {
	g := s.Goal
	if g == nil {
		return
	}
	g.Met, g.Detail = nil, ""
	rows := map[string]Row{}
	for _, r := range s.Rows(targets) {
		rows[r.Target] = r
	}
	br, ok := rows[Pgbridge]
	if !ok {
		g.Detail = "pgbridge did not run"
		return
	}
	v, ok := s.Headline(br)
	if !ok {
		g.Detail = "no pgbridge measurement"
		return
	}
	met := true
	var detail string
	switch {
	case g.Versus != "":
		ov, ok := s.Headline(rows[g.Versus])
		if !ok || ov == 0 {
			g.Detail = "no " + DisplayName(g.Versus) + " measurement"
			return
		}
		ratio := v / ov
		met = ratio >= g.MinRatio
		detail = fmt.Sprintf("%.2fx %s", ratio, DisplayName(g.Versus))
	default:
		met = v <= g.Max
		_, unit, _ := HeadlineName(s.Kind)
		detail = FormatNumber(v) + " " + unit
		if unit == "x" {
			detail = fmt.Sprintf("%.2fx", v)
		}
	}
	if g.CPUVersus != "" {
		mine, theirs := br.CPUPerOp, rows[g.CPUVersus].CPUPerOp
		if mine == 0 || theirs == 0 {
			g.Detail = detail + "; CPU per query not measured"
			return
		}
		met = met && mine <= theirs
		detail += fmt.Sprintf("; CPU %.1f µs vs %.1f µs per query", mine, theirs)
	}
	if met && (br.Errors > 0 || br.FailedRuns > 0) {
		// Latencies count successful queries only, and a failed
		// transaction or an aborted client is no throughput: a goal is
		// met by a clean run, not one that dropped its worst cases.
		g.Detail = fmt.Sprintf("%s, but pgbridge had %d errors and %d failed runs", detail, br.Errors, br.FailedRuns)
		return
	}
	g.Met, g.Detail = &met, detail
}

// DisplayName is how a target is named in the report.
func DisplayName(target string) string {
	switch target {
	case PgBouncer:
		return "PgBouncer"
	case GoRelay:
		return "Go relay"
	case GoRelayEpoll:
		return "Go relay (epoll)"
	}
	return target
}

// FormatNumber prints v with a precision that suits its size: thousands
// separated, fewer decimals for bigger numbers.
func FormatNumber(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 1000:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func groupThousands(s string) string {
	neg := s != "" && s[0] == '-'
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
