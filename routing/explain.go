package routing

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Explain describes the configuration for humans (`pgbridge check-config`):
// where it listens, the backend and its connection budget, and every tenant
// with its effective policy, marking the values that differ from defaults.
// It never prints a secret: passwords and verifiers are only said to be set.
func (c *Config) Explain() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(w, "%s\t%s\n", k, v) }

	l := c.Listen
	tlsDesc := string(l.TLS.Mode)
	if l.TLS.Mode != ListenTLSDisable {
		tlsDesc += ", certificate " + l.TLS.CertFile
	}
	row("listen", l.Address)
	row("  tls", tlsDesc)
	row("  max_client_connections", zeroAs(strconv.Itoa(l.MaxClientConnections), l.MaxClientConnections == 0, "unlimited"))
	row("  login_timeout", fmtDuration(l.LoginTimeout))
	row("  max_startup_packet", fmt.Sprintf("%d bytes", l.MaxStartupPacket))
	row("  shutdown_timeout", fmtDuration(l.ShutdownTimeout))

	if c.Admin.Address == "" {
		row("admin", "off")
	} else {
		row("admin", c.Admin.Address)
	}
	if len(c.Admin.Users) > 0 {
		row("  users", strings.Join(sortedKeys(c.Admin.Users), ", "))
	}

	be := c.Backend
	row("backend", be.Host+":"+strconv.Itoa(be.Port))
	tlsDesc = string(be.TLS.Mode)
	if be.TLS.CAFile != "" {
		tlsDesc += ", CA " + be.TLS.CAFile
	}
	row("  tls", tlsDesc)
	if be.AWSRegion != "" {
		row("  aws_region", be.AWSRegion)
	}
	row("  max_active_transactions", zeroAs(strconv.Itoa(be.MaxActiveTransactions), be.MaxActiveTransactions == 0, "unlimited"))
	row("  connect_timeout", fmtDuration(be.ConnectTimeout))
	row("  resume_timeout", fmtDuration(be.ResumeTimeout))
	row("  idle_timeout", zeroAs(fmtDuration(be.IdleTimeout), be.IdleTimeout == 0, "never"))
	row("  max_lifetime", zeroAs(fmtDuration(be.MaxLifetime), be.MaxLifetime == 0, "unlimited"))

	poolSum, minSum := 0, 0
	for _, t := range c.Tenants {
		poolSum += t.Policy.PoolSize
		minSum += t.Policy.MinPoolSize
	}
	budget := fmt.Sprintf("%d backend connections (backend.max_connections) shared by %d tenant(s)", be.MaxConnections, len(c.Tenants))
	row("budget", budget)
	share := fmt.Sprintf("%d", poolSum)
	if poolSum > be.MaxConnections {
		share += " (more than the budget: busy tenants take idle tenants' share)"
	}
	row("  sum of pool_size", share)
	row("  sum of min_pool_size", strconv.Itoa(minSum))

	row("log", fmt.Sprintf("level %s, format %s, query text %s", c.Log.Level, c.Log.Format, zeroAs("logged", !c.Log.Queries, "never logged")))
	row("metrics", zeroAs("one series per tenant", !c.Metrics.TenantLabels, "tenants folded into one series"))

	row("", "")
	row("defaults", "")
	for _, r := range policyRows(c.Defaults) {
		row("  "+r.key, r.value)
	}

	names := make([]string, 0, len(c.Tenants))
	for n := range c.Tenants {
		names = append(names, n)
	}
	sort.Strings(names)
	def := policyRows(c.Defaults)
	for _, n := range names {
		t := c.Tenants[n]
		row("", "")
		row("tenant "+t.Name, "")
		db := t.Database
		if t.Name != t.Database {
			db += fmt.Sprintf(" (clients may also name %q)", t.Name)
		}
		row("  database", db)
		cred := "no password"
		switch {
		case t.BackendAuth == BackendAuthIAM:
			cred = "RDS IAM token per connection"
		case t.BackendPassword != "":
			cred = "password set"
		}
		row("  backend_user", fmt.Sprintf("%s (%s)", t.BackendUser, cred))
		row("  users", strings.Join(sortedKeys(t.Users), ", "))
		for i, r := range policyRows(t.Policy) {
			v := r.value
			if v != def[i].value {
				v += "  (default: " + def[i].value + ")"
			}
			row("  "+r.key, v)
		}
	}
	w.Flush()
	lines := strings.Split(b.String(), "\n")
	for i, ln := range lines {
		lines[i] = strings.TrimRight(ln, " ")
	}
	return strings.Join(lines, "\n")
}

type explainRow struct{ key, value string }

func policyRows(p Policy) []explainRow {
	return []explainRow{
		{"pool_mode", string(p.PoolMode)},
		{"pool_size", strconv.Itoa(p.PoolSize)},
		{"min_pool_size", strconv.Itoa(p.MinPoolSize)},
		{"max_client_connections", zeroAs(strconv.Itoa(p.MaxClientConnections), p.MaxClientConnections == 0, "unlimited")},
		{"pool_wait_timeout", fmtDuration(p.PoolWaitTimeout)},
		{"statement_timeout", zeroAs(fmtDuration(p.StatementTimeout), p.StatementTimeout == 0, "not sent (backend default)")},
		{"max_statement_timeout", zeroAs(fmtDuration(p.MaxStatementTimeout), p.MaxStatementTimeout == 0, "off")},
		{"idle_in_transaction_timeout", zeroAs(fmtDuration(p.IdleInTransactionTimeout), p.IdleInTransactionTimeout == 0, "off")},
		{"client_idle_timeout", zeroAs(fmtDuration(p.ClientIdleTimeout), p.ClientIdleTimeout == 0, "off")},
		{"query_rate", zeroAs(strconv.FormatFloat(p.QueryRate, 'g', -1, 64)+"/s", p.QueryRate == 0, "unlimited")},
		{"query_burst", zeroAs(strconv.Itoa(p.EffectiveQueryBurst()), p.QueryRate == 0, "-")},
		{"connection_rate", zeroAs(strconv.FormatFloat(p.ConnectionRate, 'g', -1, 64)+"/s", p.ConnectionRate == 0, "unlimited")},
		{"reserved_connections", strconv.Itoa(p.ReservedConnections)},
		{"max_message_size", fmt.Sprintf("%d bytes", p.MaxMessageSize)},
	}
}

// Setting is one effective configuration value, for the admin console's
// SHOW CONFIG. Secrets never appear: only whether they are set.
type Setting struct{ Key, Value string }

// Settings lists every effective value by its dotted key path
// ("tenants.acme.pool_size"), tenants sorted by name.
func (c *Config) Settings() []Setting {
	var out []Setting
	add := func(k, v string) { out = append(out, Setting{k, v}) }
	l := c.Listen
	add("listen.address", l.Address)
	add("listen.tls.mode", string(l.TLS.Mode))
	add("listen.max_client_connections", zeroAs(strconv.Itoa(l.MaxClientConnections), l.MaxClientConnections == 0, "unlimited"))
	add("listen.login_timeout", fmtDuration(l.LoginTimeout))
	add("listen.max_startup_packet", strconv.Itoa(l.MaxStartupPacket))
	add("listen.shutdown_timeout", fmtDuration(l.ShutdownTimeout))
	add("admin.address", zeroAs(c.Admin.Address, c.Admin.Address == "", "off"))
	add("admin.users", strings.Join(sortedKeys(c.Admin.Users), ","))
	be := c.Backend
	add("backend.host", be.Host)
	add("backend.port", strconv.Itoa(be.Port))
	add("backend.tls.mode", string(be.TLS.Mode))
	add("backend.tls.ca_file", be.TLS.CAFile)
	add("backend.max_connections", strconv.Itoa(be.MaxConnections))
	add("backend.max_active_transactions", zeroAs(strconv.Itoa(be.MaxActiveTransactions), be.MaxActiveTransactions == 0, "unlimited"))
	add("backend.connect_timeout", fmtDuration(be.ConnectTimeout))
	add("backend.resume_timeout", fmtDuration(be.ResumeTimeout))
	add("backend.idle_timeout", zeroAs(fmtDuration(be.IdleTimeout), be.IdleTimeout == 0, "never"))
	add("backend.max_lifetime", zeroAs(fmtDuration(be.MaxLifetime), be.MaxLifetime == 0, "unlimited"))
	add("backend.aws_region", be.AWSRegion)
	add("log.level", c.Log.Level)
	add("log.format", c.Log.Format)
	add("log.queries", strconv.FormatBool(c.Log.Queries))
	add("metrics.tenant_labels", strconv.FormatBool(c.Metrics.TenantLabels))
	for _, r := range policyRows(c.Defaults) {
		add("defaults."+r.key, r.value)
	}
	for _, n := range sortedKeys(c.Tenants) {
		t := c.Tenants[n]
		p := "tenants." + n + "."
		add(p+"database", t.Database)
		add(p+"backend_user", t.BackendUser)
		add(p+"backend_auth", string(t.BackendAuth))
		add(p+"users", strings.Join(sortedKeys(t.Users), ","))
		for _, r := range policyRows(t.Policy) {
			add(p+r.key, r.value)
		}
	}
	return out
}

func zeroAs(s string, zero bool, word string) string {
	if zero {
		return word
	}
	return s
}

// fmtDuration prints 5m and 1h rather than 5m0s and 1h0m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
