package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Session state a client may create without a statement the router reads
// as such must still never reach the next client of its backend. Each test
// runs a tenant with one backend, so the second client always gets the
// backend the first one left.

// SQL text a DO block builds at run time and EXECUTEs may do anything: the
// session pins, and its backend is reset when it leaves.
func TestDynamicSQLPins(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1, "statement_timeout": "7s"}))
	a := r.connect(t, "acme")
	for _, sql := range []string{
		// (The text comes in pieces the router cannot put together.)
		`DO $$DECLARE q text := 'CREATE TE' || 'MP TABLE iso_secret(v text)'; BEGIN EXECUTE q; END$$`,
		`INSERT INTO pg_temp.iso_secret VALUES ('client-A-secret')`,
		`DO $$BEGIN EXECUTE 'LIS' || 'TEN iso_chan'; END$$`,
		`DO $$BEGIN EXECUTE 'SELECT pg_advi' || 'sory_lock(4242)'; END$$`,
		`DO $$BEGIN EXECUTE format('%s statement_timeout = 0', 'SE' || 'T'); END$$`,
		`DO $$BEGIN EXECUTE 'SE' || 'T search_path = app_data'; END$$`,
		`DO $$DECLARE q text := 'SE' || 'T TimeZone = ''Asia/Tokyo'''; BEGIN EXECUTE q; END$$`,
	} {
		mustExec(t, a, sql)
	}
	if n := r.counter("acme", "pin", "set"); n != 1 {
		t.Errorf("pins counted: %d, want 1", n)
	}
	closeConn(a)

	b := r.connect(t, "acme")
	var secret string
	if err := b.QueryRow(testCtx(t, 10*time.Second), "select v from pg_temp.iso_secret").Scan(&secret); err == nil {
		t.Errorf("client B reads client A's temp table: %q", secret)
	}
	if s := queryString(t, b, "show statement_timeout"); s != "7s" {
		t.Errorf("client B's statement_timeout = %q, want the tenant's 7s", s)
	}
	if s := queryString(t, b, "show search_path"); strings.Contains(s, "app_data") {
		t.Errorf("client B's search_path = %q (client A's)", s)
	}
	if n := queryInt(t, b, "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"); n != 0 {
		t.Errorf("client B's backend holds %d advisory lock(s) client A took", n)
	}
	if s, told := queryString(t, b, "show timezone"), b.PgConn().ParameterStatus("TimeZone"); s != told {
		t.Errorf("client B runs with TimeZone %q but was told %q", s, told)
	}
	mustExec(t, b, "NOTIFY iso_chan, 'for-A-only'")
	wctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if nt, err := b.WaitForNotification(wctx); err == nil {
		t.Errorf("client B got a notification on a channel it never listened on: %q %q", nt.Channel, nt.Payload)
	}
}

// UPDATE pg_settings runs set_config(name, value, false) for each row: a
// session-level SET without the word in front.
func TestUpdatePgSettingsPins(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1, "statement_timeout": "7s"}))
	a := r.connect(t, "acme")
	mustExec(t, a, "UPDATE pg_settings SET setting = '0' WHERE name = 'statement_timeout'")
	mustExec(t, a, "update only pg_catalog.pg_settings set setting = 'app_data' where name = 'search_path'")
	if s := queryString(t, a, "show statement_timeout"); s != "0" {
		t.Fatalf("client A's statement_timeout = %q, want its own 0", s)
	}
	closeConn(a)
	b := r.connect(t, "acme")
	if s := queryString(t, b, "show statement_timeout"); s != "7s" {
		t.Errorf("next client's statement_timeout = %q, want the tenant's 7s", s)
	}
	if s := queryString(t, b, "show search_path"); strings.Contains(s, "app_data") {
		t.Errorf("next client's search_path = %q", s)
	}
}

// With pg_temp first in search_path, a plain CREATE TABLE creates a
// temporary table. SET LOCAL of such a path pins the session (a temporary
// table may follow); as a startup parameter, where it would do so for the
// whole session, transaction mode refuses it.
func TestTempTablesThroughSearchPath(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	a := r.connect(t, "acme")
	mustExec(t, a, "BEGIN; SET LOCAL search_path = pg_temp, public; CREATE TABLE iso_hidden(v text); INSERT INTO iso_hidden VALUES ('A-secret'); COMMIT")
	if n := r.counter("acme", "pin", "temp_table"); n != 1 {
		t.Errorf("temp_table pins: %d, want 1", n)
	}
	closeConn(a)
	b := r.connect(t, "acme")
	var s string
	if err := b.QueryRow(testCtx(t, 10*time.Second), "select v from pg_temp.iso_hidden").Scan(&s); err == nil {
		t.Errorf("client B reads client A's temporary table: %q", s)
	}
	closeConn(b)

	_, err := connectCfg(t, connConfig(t, r.dsn("acme", "search_path=public,pg_temp")))
	if pe := wantCode(t, err, "0A000"); !strings.Contains(pe.Message, "pg_temp") {
		t.Errorf("refusal %q does not say why", pe.Message)
	}
	c := r.connect(t, "acme", "search_path=public")
	if s := queryString(t, c, "show search_path"); s != "public" {
		t.Errorf("search_path = %q", s)
	}
}

// A role's own default of a client-only encoding (set on the cluster: the
// router refuses ALTER ROLE) would let a client hide SQL from the router's
// lexer; the router asks every backend for UTF8, which a role default
// cannot override.
func TestRoleDefaultClientEncodingNeverReachesBackends(t *testing.T) {
	user := tenants["initech"].User
	if err := cluster.Exec(context.Background(), "postgres", "ALTER ROLE "+user+" SET client_encoding = 'SJIS'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Exec(context.Background(), "postgres", "ALTER ROLE "+user+" RESET client_encoding"); err != nil {
			t.Error(err)
		}
	})
	r := startRouter(t, tenantOverride("initech", cfgMap{"pool_size": 1}))
	q := func(sql string) (rows, codes []string) {
		c := hijackDSN(t, r.dsn("initech"))
		defer c.Conn.Close()
		sendAll(t, c, &pgproto3.Query{String: sql})
		return receiveUntil[*pgproto3.ReadyForQuery](t, c)
	}
	if rows, _ := q("show client_encoding"); len(rows) != 1 || rows[0] != "UTF8" {
		t.Errorf("client_encoding through the router: %v, want UTF8", rows)
	}
	// Under SJIS, 0x95 0x5C is one character: the server would read the
	// SET below as a statement where the lexer sees a string.
	q("SELECT E'\x95\\'; SET search_path = app_data; --'")
	if rows, _ := q("show search_path"); len(rows) == 1 && strings.Contains(rows[0], "app_data") {
		t.Errorf("next client's search_path = %q", rows[0])
	}
}

// A client's SQLSTATE 25006 (read-only transaction, which a DO block can
// raise at will, or a client asking for read-only transactions gets) makes
// the router check its backends for a failover; a backend whose client
// asked for default_transaction_read_only passes the check: it says
// nothing about the server.
func TestReadOnlyClientsSurviveTheFailoverCheck(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	ro := r.connect(t, "globex", "options='-c default_transaction_read_only=on'")
	pid := queryInt(t, ro, "select pg_backend_pid()")
	other := r.connect(t, "acme")
	_, err := other.Exec(testCtx(t, 10*time.Second), `DO $$BEGIN RAISE SQLSTATE '25006'; END$$`)
	wantCode(t, err, "25006")
	if now := queryInt(t, ro, "select pg_backend_pid()"); now != pid {
		t.Errorf("acme's 25006 closed globex's backend (pid %d -> %d)", pid, now)
	}
}

// ALTER ROLE and ALTER USER are refused: a role may change its own
// password (the router's logins for the tenant would fail, and the client
// could log in to the cluster past every guardrail) and its own defaults.
func TestAlterRoleRefused(t *testing.T) {
	ti := tenants["initech"]
	r := startRouter(t)
	c := r.connect(t, "initech")
	for _, sql := range []string{
		"ALTER ROLE CURRENT_USER PASSWORD 'chosen-by-client'",
		"alter user " + ti.User + " set statement_timeout = 0",
		"DO $$BEGIN EXECUTE 'ALTER ROLE CURRENT_USER PASSWORD ''chosen-by-client'''; END$$",
	} {
		_, err := c.Exec(testCtx(t, 10*time.Second), sql)
		if pe := wantCode(t, err, "42501"); !strings.Contains(pe.Message, "ALTER ROLE") {
			t.Errorf("%s: %q", sql, pe.Message)
		}
	}
	mustExec(t, c, "select 1") // the session goes on
	ctx := testCtx(t, 10*time.Second)
	if direct, err := pgx.Connect(ctx, cluster.DSN(ti.User, "chosen-by-client", ti.Database)); err == nil {
		direct.Close(ctx)
		t.Error("the backend role's password changed")
	}
}
