package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The client's parameters (startup packet, followed SET and RESET, DISCARD
// ALL) against PostgreSQL: each script runs directly and through a router
// whose one backend another client uses between the steps (a review found
// the cases after the first).

// paramStep runs one step on hc and returns what the client saw, and
// records the ParameterStatus values it was told in told.
type paramStep func(t *testing.T, hc *pgconn.HijackedConn, told map[string]string) string

// reported are the parameters whose ParameterStatus the comparison checks.
var reported = []string{"application_name", "TimeZone", "DateStyle", "IntervalStyle"}

// compareParams runs steps directly and through a router, logging in with
// the startup settings (libpq keywords, " name=value ..."), and compares
// what each step answers. What the client was told (ParameterStatus) is
// compared after each step that returns rows: after a RESET or DISCARD
// ALL the backend reports its own session default, and the client learns
// its value again before the answer to its next statement.
func compareParams(t *testing.T, startup string, steps ...paramStep) {
	t.Helper()
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	ti := tenants["acme"]
	run := func(hc, other *pgconn.HijackedConn) []string {
		told := make(map[string]string)
		for k, v := range hc.ParameterStatuses {
			told[k] = v
		}
		var out []string
		for _, st := range steps {
			got := st(t, hc, told)
			if strings.Contains(got, "R ") {
				for _, k := range reported {
					got += "; told " + k + "=" + told[k]
				}
			}
			out = append(out, got)
			if other != nil && strings.Contains(got, "R ") && !strings.Contains(got, "Z T") && !strings.Contains(got, "Z E") {
				oneRow(t, other, "select 1") // the backend goes to another client
			}
		}
		return out
	}
	direct := run(hijackDSN(t, cluster.DSN(ti.User, ti.Password, ti.Database)+startup), nil)
	routed := run(hijackDSN(t, r.dsn("acme")+startup), hijackDSN(t, r.dsn("acme")))
	for i := range direct {
		if direct[i] != routed[i] {
			t.Errorf("step %d: directly %q, through the router %q", i, direct[i], routed[i])
		}
	}
}

// send is a step that writes msgs in one write and reads the answers up to
// rfq ReadyForQuery messages: rows, errors (with severity), each
// ReadyForQuery's status.
func send(rfq int, msgs ...pgproto3.FrontendMessage) paramStep {
	return func(t *testing.T, hc *pgconn.HijackedConn, told map[string]string) string {
		sendAll(t, hc, msgs...)
		_ = hc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var out []string
		for n := 0; n < rfq; {
			m, err := hc.Frontend.Receive()
			if err != nil {
				return strings.Join(append(out, "receive: "+err.Error()), "; ")
			}
			switch m := m.(type) {
			case *pgproto3.ParameterStatus:
				told[m.Name] = m.Value
			case *pgproto3.ErrorResponse:
				out = append(out, m.Severity+" "+m.Code)
			case *pgproto3.DataRow:
				out = append(out, "R "+string(m.Values[0]))
			case *pgproto3.ReadyForQuery:
				out = append(out, "Z "+string(m.TxStatus))
				n++
			}
		}
		return strings.Join(out, "; ")
	}
}

// sql is a step of one simple Query per argument, in one write.
func sql(qs ...string) paramStep {
	msgs := make([]pgproto3.FrontendMessage, len(qs))
	for i, s := range qs {
		msgs[i] = q(s)
	}
	return send(len(qs), msgs...)
}

const showParams = "select current_setting('application_name') || '|' || current_setting('extra_float_digits') || '|' || current_setting('TimeZone')"

// RESET and DISCARD ALL put a parameter back to its session default, the
// value the login gave, not the server's: also for a parameter the router
// follows, and in a session DISCARD ALL unpins.
func TestParamsBackToLogin(t *testing.T) {
	compareParams(t, " application_name=app1 extra_float_digits=2",
		sql(showParams),
		sql("set application_name = 'x'"), sql("set extra_float_digits = 3"), sql(showParams),
		sql("reset application_name"), sql(showParams),
		sql("set application_name = 'y'"), sql("discard all"), sql(showParams),
		sql("set application_name = 'z'"), sql("begin"), sql("discard all"), sql("rollback"), sql(showParams),
		sql("set search_path = public"), sql("set application_name = 'p'"), sql("discard all"), sql(showParams),
	)
}

// What the client is told (ParameterStatus) follows its parameters: a
// login value in another case than the server's name, or one the server
// writes its own way (DateStyle), a followed SET, RESET and DISCARD ALL.
func TestParamsReported(t *testing.T) {
	compareParams(t, " application_name=app1 timezone=Asia/Tokyo options='-c DateStyle=German'",
		sql(showParams),
		sql("set application_name = 'x'"), sql("set timezone = 'Europe/Paris'"),
		sql(showParams),
		sql("reset application_name"), sql(showParams),
		sql("discard all"), sql(showParams),
	)
}

// A prepared DISCARD ALL that fails, or is skipped after an error, gives
// the client's followed parameters back; and a followed SET that fails,
// pipelined with a DISCARD ALL that fails, does not come back with its
// undo.
func TestParamsFailedDiscardAll(t *testing.T) {
	compareParams(t, " application_name=app1",
		sql("set application_name = 'x'"),
		send(1, &pgproto3.Parse{Name: "d", Query: "discard all"}, &pgproto3.Sync{}),
		sql("begin"),
		send(1, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		sql("rollback"),
		sql(showParams),
		sql("set application_name = 'y'"),
		send(1, &pgproto3.Parse{Name: "d", Query: "discard all"}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		sql(showParams),
		sql("set extra_float_digits = 100", "begin", "discard all", "rollback"),
		sql(showParams),
		sql("set application_name = 'w'", "begin", "discard all", "rollback"),
		sql(showParams),
		sql("set application_name = 'v'", "discard all"),
		sql(showParams),
	)
}

// Prepared RESET and SET, options=-c settings, and a RESET of a name in
// another case than the login's.
func TestParamsPreparedAndOptions(t *testing.T) {
	compareParams(t, " application_name=app1 extra_float_digits=2 TimeZone=Asia/Tokyo",
		sql("set application_name = 'x'"), sql("set timezone = 'Europe/Paris'"),
		send(1, &pgproto3.Parse{Name: "r", Query: "reset application_name"}, &pgproto3.Parse{Name: "rt", Query: "reset TIMEZONE"},
			&pgproto3.Parse{Name: "s", Query: "set extra_float_digits = 0"}, &pgproto3.Sync{}),
		send(1, &pgproto3.Bind{PreparedStatement: "r"}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		sql(showParams),
		send(1, &pgproto3.Bind{PreparedStatement: "rt"}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		send(1, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		sql(showParams),
	)
	compareParams(t, " application_name=app2 options='-c extra_float_digits=2 -c DateStyle=German'",
		sql("set extra_float_digits = 0"), sql("set intervalstyle = 'iso_8601'"),
		sql("reset extra_float_digits"), sql("reset IntervalStyle"),
		sql("select current_setting('extra_float_digits') || '|' || current_setting('DateStyle')"),
		sql("set intervalstyle = 'sql_standard'"), sql("discard all"),
		sql("select current_setting('extra_float_digits') || '|' || current_setting('DateStyle')"),
	)
}

// After a RESET, the client moves to a backend that has its parameters
// already, where no statement of the router's reports them: it is told
// its value all the same.
func TestParamsReportedOnBackendWithParams(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 2}))
	a := hijackDSN(t, r.dsn("acme")+" application_name=app1")
	b := hijackDSN(t, r.dsn("acme")+" application_name=app1")
	told := map[string]string{"application_name": a.ParameterStatuses["application_name"]}
	mustReady(t, a, q("begin"))
	mustReady(t, b, q("select 1")) // both backends get app1's parameters
	mustReady(t, a, q("commit"))
	send(1, q("reset application_name"))(t, a, told)
	mustReady(t, b, q("begin")) // b takes the backend the RESET ran on
	got := send(1, q("select current_setting('application_name')"))(t, a, told)
	mustReady(t, b, q("commit"))
	if got != "R app1; Z I" || told["application_name"] != "app1" {
		t.Errorf("after RESET on another backend: %s, told application_name=%q (PostgreSQL: app1)", got, told["application_name"])
	}
}

// A pinned session's backend, reset when its client leaves, reports its
// own values then: the next client is told what the backend has.
func TestParamsReportedAfterPinnedBackendReset(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	p := hijackDSN(t, r.dsn("acme"))
	mustReady(t, p, q("set seed = 0.5")) // pins
	mustReady(t, p, q("set timezone = 'Asia/Tokyo'"))
	sendAll(t, p, &pgproto3.Terminate{})
	p.Conn.Close()
	c := hijackDSN(t, r.dsn("acme")+" application_name=app1") // waits for the backend p leaves
	told := map[string]string{}
	for k, v := range c.ParameterStatuses {
		told[k] = v
	}
	for _, s := range []string{"select current_setting('TimeZone')", "reset application_name", "select current_setting('TimeZone')"} {
		send(1, q(s))(t, c, told)
	}
	if got := send(1, q("select current_setting('TimeZone')"))(t, c, told); got != "R "+told["TimeZone"]+"; Z I" {
		t.Errorf("server TimeZone %s, client told TimeZone=%q", got, told["TimeZone"])
	}
}
