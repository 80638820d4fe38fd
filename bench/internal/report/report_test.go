package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100 .. 1, unsorted on purpose
	}
	for _, tc := range []struct {
		name    string
		samples []float64
		p       float64
		want    float64
	}{
		{"empty", nil, 50, 0},
		{"one", []float64{7}, 99, 7},
		{"min", []float64{3, 1, 2}, 0, 1},
		{"max", []float64{3, 1, 2}, 100, 3},
		{"median odd", []float64{5, 1, 3}, 50, 3},
		{"median even is the lower middle", []float64{4, 1, 3, 2}, 50, 2},
		{"p50 of 1..100", hundred, 50, 50},
		{"p99 of 1..100", hundred, 99, 99},
		{"p99.9 of 1..100", hundred, 99.9, 100},
		{"p1 of 1..100", hundred, 1, 1},
		{"p99 of ten", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 10},
		{"p90 of ten", []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 90, 9},
		{"below zero", []float64{2, 1}, -5, 1},
		{"above hundred", []float64{2, 1}, 250, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]float64(nil), tc.samples...)
			if got := Percentile(tc.samples, tc.p); got != tc.want {
				t.Fatalf("Percentile(p%v) = %v, want %v", tc.p, got, tc.want)
			}
			for i := range before {
				if before[i] != tc.samples[i] {
					t.Fatal("Percentile modified its input")
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	var s []float64
	for i := 1000; i >= 1; i-- {
		s = append(s, float64(i)/10)
	}
	got := Summarize(s)
	want := Latency{Count: 1000, P50: 50, P99: 99, Max: 100}
	if got != want {
		t.Fatalf("Summarize = %+v, want %+v", got, want)
	}
	if (Summarize(nil) != Latency{}) {
		t.Fatal("Summarize(nil) is not zero")
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		v    []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1}, 2},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := Median(tc.v); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestNiceScale(t *testing.T) {
	for _, tc := range []struct{ top, step, axis float64 }{
		{0, 1, 5},
		{9.5, 2, 10},
		{20321, 5000, 25000},
		{1, 0.2, 1.2},
		{48, 10, 60},
		{0.003, 0.001, 0.004},
	} {
		step, axis := niceScale(tc.top)
		if !close(step, tc.step) || !close(axis, tc.axis) {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tc.top, step, axis, tc.step, tc.axis)
		}
		if axis < tc.top {
			t.Errorf("niceScale(%v): axis %v below the top", tc.top, axis)
		}
	}
}

func close(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestFormatNumber(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 12345.6: "12,346", 1234567: "1,234,567", 999: "999", 12.34: "12.3",
		1.234: "1.23", 0.1234: "0.123", -4321: "-4,321",
	} {
		if got := FormatNumber(v); got != want {
			t.Errorf("FormatNumber(%v) = %q, want %q", v, got, want)
		}
	}
}

// svgCounts parses an SVG document as XML and counts the bars, tick marks
// and "missing" labels in it.
func svgCounts(t *testing.T, doc []byte) (bars, marks, missing int) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, doc)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
			if se.Name.Space != "http://www.w3.org/2000/svg" {
				t.Fatalf("root namespace %q", se.Name.Space)
			}
		}
		for _, a := range se.Attr {
			if a.Name.Local != "class" {
				continue
			}
			switch {
			case se.Name.Local == "rect" && a.Value == "bar":
				bars++
			case se.Name.Local == "line" && a.Value == "mark":
				marks++
			case se.Name.Local == "text" && a.Value == "missing":
				missing++
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return bars, marks, missing
}

func TestBarChartSVG(t *testing.T) {
	c := BarChart{
		Title:  `tps <"select" & friends>`,
		Unit:   "tps",
		Series: []string{"alone", "noisy"},
		Groups: []BarGroup{
			{Label: "direct", Bars: []Bar{{Value: 10, Marks: []float64{9, 11}}, {Value: 20}}},
			{Label: "PgBouncer", Bars: []Bar{{Missing: "not supported"}, {Missing: "not supported"}}},
			{Label: "pgbridge & co", Bars: []Bar{{Value: 0.5}, {Value: 1234567}}},
		},
		Ref: 15, RefLabel: "goal < 15",
		Note: "a note with <angle> brackets",
	}
	doc := c.SVG()
	bars, marks, missing := svgCounts(t, doc)
	if bars != 4 || marks != 2 || missing != 2 {
		t.Fatalf("bars, marks, missing = %d, %d, %d; want 4, 2, 2", bars, marks, missing)
	}
	for _, want := range []string{"1,234,567", "pgbridge &amp; co", "&lt;angle&gt;"} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	// An empty chart is still a valid document.
	if bars, _, _ := svgCounts(t, BarChart{Title: "empty"}.SVG()); bars != 0 {
		t.Fatalf("empty chart has %d bars", bars)
	}
}

// sampleReport has one scenario of each kind, three targets and two rounds.
func sampleReport() *Report {
	pg := func(tps, p99 float64) *PgbenchResult {
		return &PgbenchResult{TPS: tps, Transactions: int64(tps * 10), Latency: Latency{Count: 100, P50: p99 / 3, P99: p99}}
	}
	proxy := func(cpu float64, rss int64) *ProxyUsage {
		return &ProxyUsage{PID: 42, CPUPerOpMicros: cpu, PeakRSSKiB: rss, PeakSinceRun: true}
	}
	tenants := func(scale float64) []TenantResult {
		return []TenantResult{
			{Tenant: "t0", Role: RoleNoisy, Clients: 16, Queries: 1000, QPS: 5000, Latency: Latency{P50: 2, P99: 8}},
			{Tenant: "t1", Role: RoleQuiet, Clients: 2, Queries: 100, QPS: 50, Latency: Latency{P50: 0.5 * scale, P99: 1 * scale}},
			{Tenant: "t2", Role: RoleQuiet, Clients: 2, Queries: 100, QPS: 50, Latency: Latency{P50: 0.4 * scale, P99: 2 * scale},
				Errors: 1, FirstError: "boom | bang"},
		}
	}
	quiet := func(scale float64) []TenantResult { return tenants(scale)[1:] }
	r := &Report{
		Name: "2026-01-02-testhost-quick", Mode: "quick", Host: "testhost",
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Finished: time.Date(2026, 1, 2, 3, 6, 0, 0, time.UTC),
		Machine:  Machine{CPUs: 2, Go: "go1.26", Postgres: "15.18"},
		Settings: Settings{Tenants: 4, PoolSize: 20, RunSeconds: 2, Rounds: 2, PgbenchScale: 10, SamplingRate: 0.25},
		Targets:  []string{Direct, PgBouncer, Pgbridge},
		Scenarios: []Scenario{
			{
				Name: "select-prepared-c16", Title: "select-only, prepared, 16 clients", Kind: KindPgbench,
				Command:     "pgbench -S -M prepared -c 16",
				Goal:        &Goal{Text: ">= 0.7x direct", Versus: Direct, MinRatio: 0.7},
				Unsupported: map[string]string{PgBouncer: "PgBouncer 1.18 in transaction mode"},
				Runs: []Run{
					{Target: Direct, Round: 1, Pgbench: pg(1000, 3)},
					{Target: Pgbridge, Round: 1, Pgbench: pg(800, 4), Proxy: proxy(20, 20480)},
					{Target: Direct, Round: 2, Pgbench: pg(1200, 3)},
					{Target: Pgbridge, Round: 2, Pgbench: pg(600, 5), Proxy: proxy(30, 30720)},
				},
			},
			{
				Name: "idle-10000", Title: "10,000 idle clients", Kind: KindIdle,
				Goal:          &Goal{Text: "<= 10 KiB per client", Max: 10},
				NotApplicable: map[string]string{Direct: "PostgreSQL cannot hold 10,000 connections"},
				Differs:       map[string]string{PgBouncer: "with a bigger listen backlog"},
				Runs: []Run{
					{Target: PgBouncer, Round: 1, Idle: &IdleResult{Clients: 10000, Connected: 10000, ConnectSeconds: 3,
						MemoryPerClientKiB: 3.7, MemorySource: "PgBouncer RSS"}, Proxy: proxy(0, 50000)},
					{Target: Pgbridge, Round: 1, Idle: &IdleResult{Clients: 10000, Connected: 10000, ConnectSeconds: 4,
						MemoryPerClientKiB: 12.5, MemorySource: "pgbridge RSS"}, Proxy: proxy(0, 150000)},
				},
			},
			{
				Name: "storm-500", Title: "connection storm, 500 clients", Kind: KindStorm,
				Runs: []Run{
					{Target: Direct, Round: 1, Storm: &StormResult{Clients: 500, Connected: 500, AllConnectedSeconds: 2, AllQueriedSeconds: 2.1}},
					{Target: PgBouncer, Round: 1, Error: "pgbouncer died"},
					{Target: Pgbridge, Round: 1, Storm: &StormResult{Clients: 500, Connected: 499, Errors: 1, FirstError: "timeout",
						AllConnectedSeconds: 1, AllQueriedSeconds: 1.5}, Proxy: proxy(300, 40000)},
				},
			},
			{
				Name: "noisy", Title: "noisy neighbour", Kind: KindNoisy,
				Goal: &Goal{Text: "quiet p99 within 2x of alone", Max: 2},
				Runs: []Run{
					{Target: Direct, Round: 1, Variant: VariantBaseline, Noisy: &NoisyResult{Seconds: 2, Tenants: quiet(1)}},
					{Target: Direct, Round: 1, Variant: VariantNoisy, Noisy: &NoisyResult{Seconds: 2, Tenants: tenants(5)}},
					{Target: Pgbridge, Round: 1, Variant: VariantBaseline, Noisy: &NoisyResult{Seconds: 2, Tenants: quiet(1)}},
					{Target: Pgbridge, Round: 1, Variant: VariantNoisy, Noisy: &NoisyResult{Seconds: 2, Tenants: tenants(1.5)}},
				},
			},
			{Name: "not-run", Title: "a scenario that never ran", Kind: KindPgbench},
		},
	}
	return r
}

func TestRows(t *testing.T) {
	r := sampleReport()
	rows := r.Scenarios[0].Rows(r.Targets)
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	d, b, br := rows[0], rows[1], rows[2]
	if d.TPS != 1100 || d.Rounds != 2 || d.P99 != 3 {
		t.Errorf("direct row %+v", d)
	}
	if b.Unsupported == "" || b.Rounds != 0 {
		t.Errorf("pgbouncer row %+v", b)
	}
	if br.TPS != 700 || br.CPUPerOp != 25 || br.PeakRSSKiB != 30720 || br.P99 != 4.5 {
		t.Errorf("pgbridge row %+v", br)
	}

	noisy := r.Scenarios[3].Rows(r.Targets)
	if got := noisy[0]; got.P99Ratio != 5 || got.QuietBaseP99 != 2 || got.QuietNoisyP99 != 10 || got.NoisyQPS != 5000 || got.Errors != 2 {
		t.Errorf("noisy direct row %+v", got)
	}
	if got := noisy[2]; got.P99Ratio != 1.5 || len(got.Tenants) != 3 || got.Tenants[0].Role != RoleNoisy {
		t.Errorf("noisy pgbridge row %+v", got)
	}
	storm := r.Scenarios[2].Rows(r.Targets)
	if storm[1].Failed != "pgbouncer died" || storm[1].FailedRuns != 1 {
		t.Errorf("storm pgbouncer row %+v", storm[1])
	}
}

func TestEvaluate(t *testing.T) {
	r := sampleReport()
	for i := range r.Scenarios {
		r.Scenarios[i].Evaluate(r.Targets)
	}
	check := func(i int, met bool, detail string) {
		t.Helper()
		g := r.Scenarios[i].Goal
		if g.Met == nil || *g.Met != met || !strings.Contains(g.Detail, detail) {
			t.Errorf("%s: goal %+v (met %v), want met=%v and %q", r.Scenarios[i].Name, g, g.Met, met, detail)
		}
	}
	check(0, false, "0.64x direct") // 700 / 1100
	check(1, false, "12.5 KiB")
	// The quiet tenant t2 had an error in each pgbridge run: its p99
	// leaves out the failed query, so the ratio alone cannot meet the goal.
	if g := r.Scenarios[3].Goal; g.Met != nil || !strings.Contains(g.Detail, "1.50x, but pgbridge had 2 errors") {
		t.Errorf("noisy with an error: goal %+v (met %v), want no verdict", g, g.Met)
	}
	for i := range r.Scenarios[3].Runs {
		for j := range r.Scenarios[3].Runs[i].Noisy.Tenants {
			r.Scenarios[3].Runs[i].Noisy.Tenants[j].Errors = 0
		}
	}
	r.Scenarios[3].Evaluate(r.Targets)
	check(3, true, "1.50x")

	// A goal against a target that did not run gives no verdict.
	s := r.Scenarios[0]
	s.Goal = &Goal{Text: ">= 1x PgBouncer", Versus: PgBouncer, MinRatio: 1}
	s.Evaluate(r.Targets)
	if s.Goal.Met != nil || !strings.Contains(s.Goal.Detail, "PgBouncer") {
		t.Errorf("goal against an unsupported target: %+v", s.Goal)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	r := sampleReport()
	md, err := Write(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if md != filepath.Join(dir, r.Name+".md") {
		t.Fatalf("Markdown path %s", md)
	}
	text, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# pgbridge load test: 2026-01-02-testhost-quick",
		"| [select-only, prepared, 16 clients](#select-only-prepared-16-clients) | throughput (tps) | 1,100 | not supported | 700 | - | 0.64x |",
		"| PgBouncer | not supported: PgBouncer 1.18 in transaction mode |",
		"| direct | n/a: PostgreSQL cannot hold 10,000 connections |",
		"| PgBouncer | failed: pgbouncer died |",
		"\nPgBouncer here: with a bigger listen backlog.\n",
		"boom \\| bang",
		"**not met** (0.64x direct)",
		"| [a scenario that never ran](#a-scenario-that-never-ran) | throughput (tps) | - | - | - | - | - | - |",
		"![noisy neighbour](2026-01-02-testhost-quick/noisy.svg)",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("Markdown lacks %q\n%s", want, text)
		}
	}
	if strings.Contains(string(text), "never-run.svg") || strings.Contains(string(text), "not-run.svg") {
		t.Error("a scenario without runs got a chart")
	}
	// Every chart the Markdown points at exists and is a valid SVG with a
	// bar per measured target.
	wantBars := map[string]int{"select-prepared-c16": 2, "idle-10000": 2, "storm-500": 4, "noisy": 8}
	for _, s := range r.Scenarios {
		if s.Chart == "" {
			continue
		}
		doc, err := os.ReadFile(filepath.Join(dir, s.Chart))
		if err != nil {
			t.Fatal(err)
		}
		if bars, _, _ := svgCounts(t, doc); bars != wantBars[s.Name] {
			t.Errorf("%s: %d bars, want %d", s.Name, bars, wantBars[s.Name])
		}
	}
	// The JSON holds everything and reads back.
	js, err := os.ReadFile(filepath.Join(dir, r.Name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Scenarios) != 5 || back.Scenarios[0].Runs[1].Proxy.CPUPerOpMicros != 20 ||
		back.Scenarios[0].Goal.Met == nil || back.Scenarios[3].Chart != r.Name+"/noisy.svg" {
		t.Errorf("JSON round trip lost data: %s", js)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestAnchor(t *testing.T) {
	if got := anchor("select-only, simple protocol, 16 clients (-C)"); got != "select-only-simple-protocol-16-clients--c" {
		t.Fatalf("anchor = %q", got)
	}
}

func TestIdleChartOffScale(t *testing.T) {
	idle := func(target string, kib float64) Run {
		return Run{Target: target, Round: 1, Idle: &IdleResult{Clients: 1000, Connected: 1000,
			MemoryPerClientKiB: kib, MemorySource: "test"}}
	}
	s := Scenario{Name: "idle-1000", Title: "1,000 idle clients", Kind: KindIdle,
		Runs: []Run{idle(Direct, 1244), idle(PgBouncer, 1), idle(Pgbridge, 18.7)}}
	targets := []string{Direct, PgBouncer, Pgbridge}
	c := s.BuildChart(targets)
	if got := c.Groups[0].Bars[0].Missing; !strings.Contains(got, "1,244 KiB") {
		t.Fatalf("direct bar %+v, want it off the scale", c.Groups[0].Bars[0])
	}
	if bars, _, missing := svgCounts(t, c.SVG()); bars != 2 || missing != 1 {
		t.Fatalf("%d bars and %d missing, want 2 and 1", bars, missing)
	}
	// Close to the proxies' values, direct is drawn.
	s.Runs[0] = idle(Direct, 50)
	if bars, _, _ := svgCounts(t, s.BuildChart(targets).SVG()); bars != 3 {
		t.Fatalf("%d bars, want 3", bars)
	}
}

func TestNoisyCPUIgnoresBaseline(t *testing.T) {
	r := sampleReport()
	s := &r.Scenarios[3]
	s.Runs[2].Proxy = &ProxyUsage{CPUPerOpMicros: 300} // baseline: mostly idle overhead
	s.Runs[3].Proxy = &ProxyUsage{CPUPerOpMicros: 40}
	if got := s.Rows(r.Targets)[2].CPUPerOp; got != 40 {
		t.Fatalf("CPU per query %v, want the noisy run's 40", got)
	}
}
