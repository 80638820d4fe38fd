package proxy_test

import (
	"testing"
)

// After a RESET of a login parameter the client is told the backend's own
// default; its next request may land on a backend that already reports
// the client's value (another client's parameters set it there), where
// the router's statement that gives the backend the client's parameters
// changes, and so reports, nothing: the client must be told its value all
// the same, as PostgreSQL never told it another.
func TestParamsEdgeToldAfterResetOnSharedValue(t *testing.T) {
	for _, stmt := range []string{"reset application_name", "discard all"} {
		r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
		a := hijackDSN(t, r.dsn("acme")+" application_name=app1 TimeZone=Asia/Tokyo")
		b := hijackDSN(t, r.dsn("acme")+" application_name=app1 TimeZone=Asia/Tokyo extra_float_digits=2")
		told := map[string]string{}
		for k, v := range a.ParameterStatuses {
			told[k] = v
		}
		send(1, q(stmt))(t, a, told)
		oneRow(t, b, "select 1") // b's parameters: a's values already
		got := send(1, q("select current_setting('application_name') || '|' || current_setting('TimeZone')"))(t, a, told)
		if got != "R app1|Asia/Tokyo; Z I" || told["application_name"] != "app1" || told["TimeZone"] != "Asia/Tokyo" {
			t.Errorf("after %s: %s, told application_name=%q TimeZone=%q (PostgreSQL: app1, Asia/Tokyo)", stmt, got, told["application_name"], told["TimeZone"])
		}
	}
}

// An empty value is a value: options=-c search_path= (a search_path that
// names no schema) must reach the backend, not be dropped as the
// backend's own value because the backend reports no search_path.
func TestParamsEdgeEmptyStartupValue(t *testing.T) {
	compareParams(t, " options='-c search_path= -c application_name=x'",
		sql("select current_setting('search_path')"),
		sql("select count(*)::text from pg_catalog.pg_namespace where nspname = any (current_schemas(false))"),
	)
}

// PostgreSQL applies the options' -c settings first and the startup
// packet's own parameters after them, and a later setting of a name wins
// whatever its case: every login through the router must see the same.
func TestParamsEdgeStartupPrecedence(t *testing.T) {
	const startup = " application_name=b options='-c application_name=a -c timezone=Asia/Tokyo -c TimeZone=Europe/Paris'"
	const show = "select current_setting('application_name') || '|' || current_setting('TimeZone')"
	ti := tenants["acme"]
	want := oneRow(t, hijackDSN(t, cluster.DSN(ti.User, ti.Password, ti.Database)+startup), show)
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	for i := 0; i < 8; i++ { // (parameters come as a map: any order)
		c := hijackDSN(t, r.dsn("acme")+startup)
		if got := oneRow(t, c, show); got != want {
			t.Fatalf("login %d: %s, PostgreSQL %s", i, got, want)
		}
		c.Conn.Close()
	}
}

// A login value the server reports in its own spelling (DateStyle=iso is
// "ISO, MDY", client_encoding=utf8 is "UTF8"): the router's welcome tells
// the client's spelling, and the client must learn the server's before
// the answer to its first statement, on a fresh backend or one that has
// its parameters already.
func TestParamsEdgeReportedSpelling(t *testing.T) {
	const startup = " client_encoding=utf8 options='-c DateStyle=iso'"
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	for i := 0; i < 3; i++ {
		if i == 2 {
			// A client without parameters leaves the backend with none:
			// the known set rides in front of the next request.
			p := hijackDSN(t, r.dsn("acme"))
			oneRow(t, p, "select 1")
			p.Conn.Close()
		}
		c := hijackDSN(t, r.dsn("acme")+startup)
		told := map[string]string{}
		for k, v := range c.ParameterStatuses {
			told[k] = v
		}
		got := send(1, q("select current_setting('DateStyle') || '|' || current_setting('client_encoding')"))(t, c, told)
		if want := "R ISO, MDY|UTF8; Z I"; got != want || told["DateStyle"] != "ISO, MDY" || told["client_encoding"] != "UTF8" {
			t.Errorf("login %d: %s, told DateStyle=%q client_encoding=%q (PostgreSQL: ISO, MDY and UTF8)", i, got, told["DateStyle"], told["client_encoding"])
		}
		c.Conn.Close()
	}
}
