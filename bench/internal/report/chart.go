package report

import "fmt"

// BuildChart builds the scenario's chart: throughput per target for pgbench
// scenarios, memory per client for idle clients, connect times for the
// storm, and each quiet tenant's p99 alone and with the noisy tenant for the
// noisy-neighbour scenario.
func (s *Scenario) BuildChart(targets []string) BarChart {
	rows := s.Rows(targets)
	c := BarChart{Title: s.Title}
	switch s.Kind {
	case KindPgbench:
		c.Unit = "transactions per second (median of rounds)"
		c.Series = []string{"tps"}
		for _, r := range rows {
			bar := Bar{Missing: missing(s, r)}
			if bar.Missing == "" {
				bar.Value = r.TPS
				if len(r.TPSRuns) > 1 {
					bar.Marks = r.TPSRuns
				}
			}
			c.Groups = append(c.Groups, BarGroup{Label: DisplayName(r.Target), Bars: []Bar{bar}})
		}
		c.Note = "Bars: median over the rounds; black ticks: each round."
	case KindIdle:
		c.Unit = "KiB per idle client"
		c.Series = []string{"memory per client"}
		proxies := 0.0
		for _, r := range rows {
			if r.Target != Direct && missing(s, r) == "" {
				proxies = max(proxies, r.MemPerClientKiB)
			}
		}
		for _, r := range rows {
			bar := Bar{Missing: missing(s, r)}
			switch {
			case bar.Missing != "":
			case r.Target == Direct && proxies > 0 && r.MemPerClientKiB > 10*proxies:
				// A PostgreSQL backend costs orders of magnitude more than
				// a proxy's client; drawn to scale, the proxies' bars
				// would vanish.
				bar.Missing = FormatNumber(r.MemPerClientKiB) + " KiB: off the scale"
			default:
				bar.Value = r.MemPerClientKiB
			}
			c.Groups = append(c.Groups, BarGroup{Label: DisplayName(r.Target), Bars: []Bar{bar}})
		}
		c.Note = "Proxies: growth of the proxy's RSS. direct: growth of the PSS of PostgreSQL's backends."
		if s.Goal != nil && s.Goal.Max > 0 {
			c.Ref, c.RefLabel = s.Goal.Max, fmt.Sprintf("goal: %s KiB", FormatNumber(s.Goal.Max))
		}
	case KindStorm:
		c.Unit = "seconds after the start signal"
		c.Series = []string{"all clients logged in", "all clients answered a first query"}
		for _, r := range rows {
			m := missing(s, r)
			a, q := Bar{Missing: m}, Bar{Missing: m}
			if m == "" {
				a.Value, q.Value = r.AllConnectedSeconds, r.AllQueriedSeconds
			}
			c.Groups = append(c.Groups, BarGroup{Label: DisplayName(r.Target), Bars: []Bar{a, q}})
		}
	case KindNoisy:
		c.Unit = "quiet tenant p99 latency (ms)"
		c.Series = []string{"p99 alone", "p99 next to the noisy tenant"}
		for _, r := range rows {
			if m := missing(s, r); m != "" {
				c.Groups = append(c.Groups, BarGroup{Label: DisplayName(r.Target),
					Bars: []Bar{{Missing: m}, {Missing: m}}})
				continue
			}
			for _, t := range r.Tenants {
				if t.Role != RoleQuiet {
					continue
				}
				c.Groups = append(c.Groups, BarGroup{
					Label: DisplayName(r.Target) + "\n" + t.Tenant,
					Bars:  []Bar{{Value: t.BaseP99}, {Value: t.NoisyP99}},
				})
			}
		}
		c.Note = "Each quiet tenant runs at a fixed rate; latency counts from the moment a query was due."
	}
	return c
}

// missing is the text shown instead of a target's bar, or "" if it has one.
func missing(s *Scenario, r Row) string {
	switch {
	case r.Unsupported != "":
		return "not supported"
	case r.Failed != "":
		return "failed"
	}
	if _, ok := s.Headline(r); !ok {
		return "n/a"
	}
	return ""
}
