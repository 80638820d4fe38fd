package proxy_test

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgbridge/pgbridge/proxy"
)

// Logs: connection open and close with tenant, reason and duration at
// Info; refusals with their reason; query text only with log.queries.
func TestLogsNameTenantAndReasonButNoSecrets(t *testing.T) {
	for _, queries := range []bool{false, true} {
		core, logs := observer.New(zap.InfoLevel)
		r := startRouterWith(t, []proxy.Option{proxy.WithLogger(zap.New(core))}, cfgMap{"log": cfgMap{"queries": queries}})
		conn := r.connect(t, "acme")
		mustExec(t, conn, "select 'needle-in-sql'")
		queryInt(t, conn, "select length($1::text)", "param-needle")
		closeConn(conn)
		_, err := connectCfg(t, connConfig(t, r.dsn("globex", "password=wrong-secret")))
		wantCode(t, err, "28P01")
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}

		var all strings.Builder
		seen := map[string]bool{}
		for _, e := range logs.All() {
			fields := e.ContextMap()
			all.WriteString(e.Message)
			for k, v := range fields {
				all.WriteString(" " + k + "=")
				all.WriteString(strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(fmt.Sprint(v), "\n", " "), "\t", " ")))
			}
			all.WriteString("\n")
			switch e.Message {
			case "client disconnected":
				if fields["tenant"] == "acme" && fields["reason"] != nil && fields["duration"] != nil {
					seen["close"] = true
				}
			case "client connected":
				if fields["tenant"] == "acme" && fields["conn_id"] != nil && fields["client"] != nil {
					seen["open"] = true
				}
			case "login refused":
				if fields["reason"] == "auth_failed" && fields["sqlstate"] == "28P01" {
					seen["refusal"] = true
				}
			}
		}
		text := all.String()
		for _, k := range []string{"open", "close", "refusal"} {
			if !seen[k] {
				t.Errorf("queries=%v: no %s log line:\n%s", queries, k, text)
			}
		}
		for _, secret := range []string{"wrong-secret", tenants["acme"].LoginPassword, tenants["acme"].Password, "SCRAM-SHA-256", "param-needle"} {
			if strings.Contains(text, secret) {
				t.Errorf("queries=%v: logs contain %q:\n%s", queries, secret, text)
			}
		}
		if got := strings.Contains(text, "needle-in-sql"); got != queries {
			t.Errorf("log.queries=%v but query text logged=%v:\n%s", queries, got, text)
		}
	}
}
