package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Write evaluates the goals, renders every scenario's chart into
// dir/<Name>/<scenario>.svg and writes dir/<Name>.json and dir/<Name>.md.
// Each file is written to a temporary name first and renamed, so a reader
// never sees half a report. It returns the path of the Markdown report.
func Write(dir string, r *Report) (string, error) {
	if r.Name == "" {
		return "", fmt.Errorf("report: no name")
	}
	chartDir := filepath.Join(dir, r.Name)
	if err := os.MkdirAll(chartDir, 0o755); err != nil {
		return "", err
	}
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		s.Evaluate(r.Targets)
		if len(s.Runs) == 0 && len(s.Unsupported) == 0 {
			s.Chart = ""
			continue
		}
		name := s.Name + ".svg"
		if err := writeFile(filepath.Join(chartDir, name), s.BuildChart(r.Targets).SVG()); err != nil {
			return "", err
		}
		s.Chart = r.Name + "/" + name
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeFile(filepath.Join(dir, r.Name+".json"), append(js, '\n')); err != nil {
		return "", err
	}
	md := filepath.Join(dir, r.Name+".md")
	return md, writeFile(md, Markdown(r))
}

func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Markdown renders the report. Chart paths must have been set (Write does).
func Markdown(r *Report) []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# pgbridge load test: %s\n\n", r.Name)
	if r.Interrupted != "" {
		p("**Incomplete run: %s.** Scenarios without runs below did not run.\n\n", r.Interrupted)
	}
	m := r.Machine
	machine := fmt.Sprintf("%s, %d CPUs", r.Host, m.CPUs)
	if m.CPUModel != "" {
		machine += " (" + m.CPUModel + ")"
	}
	if m.MemoryMiB > 0 {
		machine += fmt.Sprintf(", %.0f GiB RAM", float64(m.MemoryMiB)/1024)
	}
	if m.Kernel != "" {
		machine += ", Linux " + m.Kernel
	}
	if m.LoadAverage != "" {
		machine += "; load average at the start: " + m.LoadAverage
	}
	p("- **Machine**: %s. Load generators, proxies and PostgreSQL share these CPUs.\n", machine)
	var sw []string
	for _, kv := range [][2]string{{"PostgreSQL", m.Postgres}, {"pgbench", m.Pgbench}, {"PgBouncer", m.PgBouncer},
		{"pgbridge", m.PgbridgeCommit}, {"Go", strings.TrimPrefix(m.Go, "go")}} {
		if kv[1] != "" {
			sw = append(sw, kv[0]+" "+kv[1])
		}
	}
	p("- **Software**: %s.\n", strings.Join(sw, ", "))
	st := r.Settings
	names := make([]string, len(r.Targets))
	for i, t := range r.Targets {
		names[i] = DisplayName(t)
	}
	p("- **Setup**: %d Bridge tenants; both proxies in transaction mode with pool_size %d per tenant; "+
		"pgbench scale %d in the first tenant; runs of %g s; %s, each running the targets in the order %s.\n",
		st.Tenants, st.PoolSize, st.PgbenchScale, st.RunSeconds, plural(st.Rounds, "round"), strings.Join(names, ", "))
	p("- **Mode**: %s; started %s, took %s.\n\n", r.Mode, r.Started.UTC().Format("2006-01-02 15:04 MST"),
		r.Finished.Sub(r.Started).Round(time.Second))
	p("Medians over the rounds; errors are summed. Latency percentiles of pgbench runs come from its "+
		"per-transaction log (%g%% of transactions logged). Figures move by about ±10%% between runs on a shared machine: "+
		"compare targets within this report rather than across reports. How each scenario works and how to read "+
		"the tables: [bench/README.md](../README.md).\n\n", 100*st.SamplingRate)
	for _, n := range r.Notes {
		p("> %s\n\n", n)
	}

	// Summary: one line per scenario.
	p("## Summary\n\n| scenario | measure |")
	for _, t := range r.Targets {
		p(" %s |", DisplayName(t))
	}
	vs := []string{}
	for _, t := range []string{PgBouncer, Direct} {
		if slices.Contains(r.Targets, t) && slices.Contains(r.Targets, Pgbridge) {
			vs = append(vs, t)
			p(" pgbridge / %s |", DisplayName(t))
		}
	}
	p(" issue 7 goal for pgbridge |\n|---|---|%s\n", strings.Repeat("---|", len(r.Targets)+len(vs)+1))
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		name, unit, _ := HeadlineName(s.Kind)
		p("| [%s](#%s) | %s (%s) |", s.Title, anchor(s.Title), name, unit)
		rows := s.Rows(r.Targets)
		vals := map[string]float64{}
		for _, row := range rows {
			if v, ok := s.Headline(row); ok {
				vals[row.Target] = v
				p(" %s |", FormatNumber(v))
			} else {
				p(" %s |", missingCell(s, row))
			}
		}
		for _, t := range vs {
			a, okA := vals[Pgbridge]
			o, okO := vals[t]
			if okA && okO && o != 0 {
				p(" %.2fx |", a/o)
			} else {
				p(" - |")
			}
		}
		p(" %s |\n", goalCell(s.Goal))
	}
	p("\n")

	for i := range r.Scenarios {
		writeScenario(&b, r, &r.Scenarios[i])
	}
	return b.Bytes()
}

func writeScenario(b *bytes.Buffer, r *Report, s *Scenario) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## %s\n\n", s.Title)
	if s.Command != "" {
		p("`%s`\n\n", s.Command)
	}
	if s.Measures != "" {
		p("%s\n\n", s.Measures)
	}
	if s.Goal != nil {
		p("Goal for pgbridge (issue 7): %s. Result: %s.\n\n", s.Goal.Text, goalVerdict(s.Goal))
	}
	rows := s.Rows(r.Targets)
	switch s.Kind {
	case KindPgbench:
		base := 0.0
		for _, row := range rows {
			if row.Target == Direct && row.Rounds > 0 {
				base = row.TPS
			}
		}
		p("| target | tps | vs direct | p50 ms | p99 ms | errors | proxy CPU µs/txn | proxy peak RSS MiB | tps per round |\n")
		p("|---|---|---|---|---|---|---|---|---|\n")
		for _, row := range rows {
			if skip(b, row, 8) {
				continue
			}
			ratio := "-"
			if base > 0 {
				ratio = fmt.Sprintf("%.2fx", row.TPS/base)
			}
			var runs []string
			for _, v := range row.TPSRuns {
				runs = append(runs, FormatNumber(v))
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", DisplayName(row.Target), FormatNumber(row.TPS), ratio,
				ms(row.P50), ms(row.P99), errCell(row), cpuCell(row), rssCell(row), strings.Join(runs, ", "))
		}
	case KindIdle:
		p("| target | clients connected | errors | time to connect all (s) | memory per client (KiB) | measured as | proxy peak RSS MiB |\n")
		p("|---|---|---|---|---|---|---|\n")
		for _, row := range rows {
			if skip(b, row, 6) {
				continue
			}
			p("| %s | %d | %s | %s | %s | %s | %s |\n", DisplayName(row.Target), row.Connected, errCell(row),
				FormatNumber(row.ConnectSeconds), FormatNumber(row.MemPerClientKiB), row.MemSource, rssCell(row))
		}
	case KindStorm:
		p("| target | clients connected | errors | all logged in (s) | all answered (s) | login p50 ms | login p99 ms | first query p99 ms | proxy CPU µs/login | proxy peak RSS MiB |\n")
		p("|---|---|---|---|---|---|---|---|---|---|\n")
		for _, row := range rows {
			if skip(b, row, 9) {
				continue
			}
			p("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", DisplayName(row.Target), row.Connected, errCell(row),
				FormatNumber(row.AllConnectedSeconds), FormatNumber(row.AllQueriedSeconds), ms(row.ConnectP50), ms(row.ConnectP99),
				ms(row.FirstQueryP99), cpuCell(row), rssCell(row))
		}
	case KindNoisy:
		p("| target | worst quiet p50 alone ms | worst quiet p99 alone ms | worst quiet p50 with noise ms | worst quiet p99 with noise ms | p99 with noise / alone | noisy tenant qps | errors | proxy CPU µs/query | proxy peak RSS MiB |\n")
		p("|---|---|---|---|---|---|---|---|---|---|\n")
		for _, row := range rows {
			if skip(b, row, 9) {
				continue
			}
			p("| %s | %s | %s | %s | %s | %.2fx | %s | %s | %s | %s |\n", DisplayName(row.Target),
				ms(row.QuietBaseP50), ms(row.QuietBaseP99), ms(row.QuietNoisyP50), ms(row.QuietNoisyP99), row.P99Ratio,
				FormatNumber(row.NoisyQPS), errCell(row), cpuCell(row), rssCell(row))
		}
		p("\nPer tenant (medians over the rounds):\n\n")
		p("| target | tenant | role | clients | qps alone | p50 alone ms | p99 alone ms | qps with noise | p50 with noise ms | p99 with noise ms | p99 ratio | errors |\n")
		p("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, row := range rows {
			for _, t := range row.Tenants {
				ratio := "-"
				if t.Ratio > 0 {
					ratio = fmt.Sprintf("%.2fx", t.Ratio)
				}
				base := []string{FormatNumber(t.BaseQPS), ms(t.BaseP50), ms(t.BaseP99)}
				if t.Role == RoleNoisy {
					base = []string{"-", "-", "-"} // the noisy tenant does not run in the baseline
				}
				e := fmt.Sprint(t.Errors)
				if t.FirstError != "" {
					e += ": " + cell(t.FirstError)
				}
				p("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", DisplayName(row.Target), t.Tenant, t.Role,
					t.Clients, base[0], base[1], base[2], FormatNumber(t.NoisyQPS), ms(t.NoisyP50), ms(t.NoisyP99), ratio, e)
			}
		}
	}
	p("\n")
	for _, t := range r.Targets {
		if d := s.Differs[t]; d != "" {
			p("%s here: %s.\n\n", DisplayName(t), d)
		}
	}
	if s.Chart != "" {
		p("![%s](%s)\n\n", s.Title, s.Chart)
	}
}

// skip writes the line of a target that has no measurement and reports
// whether it did. cols is the number of columns after the target's.
func skip(b *bytes.Buffer, row Row, cols int) bool {
	var text string
	switch {
	case row.Unsupported != "":
		text = "not supported: " + row.Unsupported
	case row.NotApplicable != "":
		text = "n/a: " + row.NotApplicable
	case row.Failed != "":
		text = "failed: " + row.Failed
	case row.Rounds == 0:
		text = "not run"
	default:
		return false
	}
	fmt.Fprintf(b, "| %s | %s |%s\n", DisplayName(row.Target), cell(text), strings.Repeat(" |", cols-1))
	return true
}

func missingCell(s *Scenario, row Row) string {
	switch {
	case row.Unsupported != "":
		return "not supported"
	case row.NotApplicable != "":
		return "n/a"
	case row.Failed != "":
		return "failed"
	}
	return "-"
}

func goalCell(g *Goal) string {
	if g == nil {
		return "-"
	}
	return g.Text + ": " + goalVerdict(g)
}

func goalVerdict(g *Goal) string {
	switch {
	case g.Met == nil:
		return "no verdict (" + g.Detail + ")"
	case *g.Met:
		return "**met** (" + g.Detail + ")"
	default:
		return "**not met** (" + g.Detail + ")"
	}
}

func errCell(row Row) string {
	s := fmt.Sprint(row.Errors)
	if row.FailedRuns > 0 {
		s += fmt.Sprintf(" (+%d failed runs)", row.FailedRuns)
	}
	if row.FirstError != "" && (row.Errors > 0 || row.FailedRuns > 0) {
		s += ": " + cell(row.FirstError)
	}
	return s
}

func cpuCell(row Row) string {
	if row.CPUPerOp == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", row.CPUPerOp)
}

func rssCell(row Row) string {
	if row.PeakRSSKiB == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(row.PeakRSSKiB)/1024)
}

func ms(v float64) string {
	if v == 0 {
		return "-"
	}
	return FormatNumber(v)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// cell makes text safe inside a Markdown table cell: one line, no pipes,
// not too long.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if r := []rune(s); len(r) > 160 {
		s = string(r[:157]) + "..."
	}
	return s
}

// anchor is the id GitHub gives a heading: lower case, punctuation other
// than '-' and '_' dropped, spaces turned into '-'.
func anchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}
