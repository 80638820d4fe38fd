package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The dashboard and the alerting rules in deploy/monitoring may only select
// series the collector exports. These tests read every PromQL expression in
// them, find each pgbridge_* selector and check, against the exposition of
// the sample snapshot, that the metric exists under that exact name (with
// _bucket/_sum/_count only on histograms) and that every label matcher
// matches at least one exported series.

const (
	dashboardFile = "../deploy/monitoring/pgbridge-dashboard.json"
	alertsFile    = "../deploy/monitoring/alerts.yml"
)

var (
	selectorRE = regexp.MustCompile(`\b(pgbridge_[a-zA-Z0-9_]+)\s*(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	groupingRE = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	variableRE = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// Labels that Prometheus adds at scrape time, and le of histogram buckets.
var scrapeLabels = []string{"instance", "job", "le"}

type exprAt struct {
	where, expr string
}

func TestDashboardAndAlertsSelectExportedSeries(t *testing.T) {
	exported := gatherSeries(t, New(Options{Source: sampleSource, TenantLabels: true}).Registry())
	labelNames := map[string]bool{}
	for _, s := range exported {
		if strings.HasPrefix(s.name, "pgbridge_") {
			for n := range s.labels {
				labelNames[n] = true
			}
		}
	}
	for _, n := range scrapeLabels {
		labelNames[n] = true
	}

	exprs := append(dashboardExprs(t), alertExprs(t)...)
	if len(exprs) < 20 {
		t.Fatalf("found only %d expressions; is the extraction broken?", len(exprs))
	}
	names := map[string]bool{}
	for _, e := range exprs {
		sels := selectorRE.FindAllStringSubmatch(e.expr, -1)
		if len(sels) == 0 {
			t.Errorf("%s: selects no pgbridge_ metric: %s", e.where, e.expr)
		}
		for _, sel := range sels {
			name, matchers := sel[1], sel[2]
			names[name] = true
			var candidates []series
			for _, s := range exported {
				if s.name == name {
					candidates = append(candidates, s)
				}
			}
			if len(candidates) == 0 {
				t.Errorf("%s: %s is not exported by the collector", e.where, name)
				continue
			}
			if matchers != "" && !anyMatches(t, e.where, candidates, matchers) {
				t.Errorf("%s: no exported series matches %s%s", e.where, name, matchers)
			}
		}
		for _, g := range groupingRE.FindAllStringSubmatch(e.expr, -1) {
			for l := range strings.SplitSeq(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !labelNames[l] {
					t.Errorf("%s: groups by %q, which no pgbridge series has", e.where, l)
				}
			}
		}
	}

	// The families the issue asks the dashboard and the rules to use.
	for _, want := range []string{
		"pgbridge_client_connections", "pgbridge_queries_total",
		"pgbridge_query_duration_seconds_bucket", "pgbridge_pool_wait_seconds_bucket",
		"pgbridge_client_rejections_total", "pgbridge_cancels_total",
		"pgbridge_backend_budget", "pgbridge_backend_connects_total",
		"pgbridge_config_last_reload_successful",
	} {
		if !names[want] {
			t.Errorf("neither the dashboard nor the rules use %s", want)
		}
	}
}

// anyMatches reports whether one of the series satisfies every matcher in
// the selector's braces. Matchers on Grafana variables and on labels the
// scrape adds cannot be checked here and are skipped.
func anyMatches(t *testing.T, where string, candidates []series, braces string) bool {
	t.Helper()
	type matcher struct {
		label, op string
		re        *regexp.Regexp
		value     string
	}
	var ms []matcher
	for _, m := range matcherRE.FindAllStringSubmatch(braces, -1) {
		label, op, value := m[1], m[2], m[3]
		if strings.Contains(value, "$") || (slices.Contains(scrapeLabels, label) && label != "le") {
			continue
		}
		mm := matcher{label: label, op: op, value: value}
		if op == "=~" || op == "!~" {
			re, err := regexp.Compile("^(?:" + value + ")$")
			if err != nil {
				t.Errorf("%s: bad regexp in %s: %v", where, braces, err)
				return true
			}
			mm.re = re
		}
		ms = append(ms, mm)
	}
	for _, s := range candidates {
		ok := true
		for _, m := range ms {
			v := s.labels[m.label]
			switch m.op {
			case "=":
				ok = v == m.value
			case "!=":
				ok = v != m.value
			case "=~":
				ok = m.re.MatchString(v)
			case "!~":
				ok = !m.re.MatchString(v)
			}
			if !ok {
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
			Query      any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func dashboardExprs(t *testing.T) []exprAt {
	d := readDashboard(t)
	var out []exprAt
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Definition
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		} else if s, ok := v.Query.(string); ok {
			q = s
		}
		out = append(out, exprAt{"dashboard variable " + v.Name, q})
	}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			out = append(out, exprAt{"dashboard panel " + p.Title, tg.Expr})
		}
	}
	return out
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return f
}

func alertExprs(t *testing.T) []exprAt {
	var out []exprAt
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			out = append(out, exprAt{"alert " + r.Alert, r.Expr})
		}
	}
	return out
}

func TestDashboardShape(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	for _, want := range []string{"datasource", "instance", "tenant"} {
		if !vars[want] {
			t.Errorf("dashboard lacks the %q variable", want)
		}
	}
	ids := map[int]string{}
	for _, p := range allPanels(d.Panels) {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the datasource variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: missing or repeated refId %q", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			for _, m := range variableRE.FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[m[1]] && !strings.HasPrefix(m[1], "__") {
					t.Errorf("panel %q uses undefined variable $%s", p.Title, m[1])
				}
			}
		}
	}
}

func TestAlertRulesShape(t *testing.T) {
	var alerts []string
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			if !strings.HasPrefix(r.Alert, "Pgbridge") {
				t.Errorf("alert %s: names start with Pgbridge", r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || len(r.Annotations["description"]) < 80 {
				t.Errorf("alert %s: needs a summary and a description saying what to check", r.Alert)
			}
		}
	}
	for _, want := range []string{
		"PgbridgeBackendBudgetNearExhaustion", "PgbridgeTenantThrottled", "PgbridgePoolWaitSlow",
		"PgbridgeBackendConnectFailures", "PgbridgeConfigReloadFailed",
	} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts.yml lacks %s", want)
		}
	}
}
