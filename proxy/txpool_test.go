package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/stdlib"
)

// connectMode opens a pgx connection in the given QueryExecMode.
func (r *router) connectMode(t *testing.T, tenant string, mode pgx.QueryExecMode, extra ...string) *pgx.Conn {
	t.Helper()
	cc := connConfig(t, r.dsn(tenant, extra...))
	cc.DefaultQueryExecMode = mode
	conn, err := connectCfg(t, cc)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return conn
}

// Every pgx QueryExecMode works through transaction pooling with many
// more clients than backends, so named statements land on backends that
// never saw their Parse. Each client alternates two query texts, so that
// a backend may still hold a client's previous unnamed statement
// (describe_exec once ran that one).
func TestPgxEveryExecModeInTransactionMode(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 3}))
	modes := []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := testCtx(t, 90*time.Second)
			var wg sync.WaitGroup
			errs := make(chan error, 50)
			for g := 0; g < 50; g++ {
				conn := r.connectMode(t, "acme", mode)
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < 20; i++ {
						var sum int64
						var txt string
						q := fmt.Sprintf("select $1::int8 + $2::int8 + %d, $3::text", i%2)
						if err := conn.QueryRow(ctx, q, g, i, fmt.Sprint("g", g)).Scan(&sum, &txt); err != nil {
							errs <- fmt.Errorf("client %d query %d: %w", g, i, err)
							return
						}
						if sum != int64(g+i+i%2) || txt != fmt.Sprint("g", g) {
							errs <- fmt.Errorf("client %d got %d %q", g, sum, txt)
							return
						}
						if i%5 == 0 {
							tx, err := conn.Begin(ctx)
							if err != nil {
								errs <- err
								return
							}
							var n int64
							if err := tx.QueryRow(ctx, "select count(*) from generate_series(1, $1::int)", g+1).Scan(&n); err != nil || n != int64(g+1) {
								errs <- fmt.Errorf("client %d tx: %v %d", g, err, n)
								_ = tx.Rollback(ctx)
								return
							}
							if err := tx.Commit(ctx); err != nil {
								errs <- err
								return
							}
						}
					}
				}(g)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// database/sql with prepared statements reused across many transactions,
// through the pgx stdlib driver.
func TestDatabaseSQLPreparedStatementsAcrossTransactions(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 2}))
	cc := connConfig(t, r.dsn("globex"))
	cc.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	db := stdlib.OpenDB(*cc)
	defer db.Close()
	db.SetMaxOpenConns(6)
	ctx := testCtx(t, 60*time.Second)
	if _, err := db.ExecContext(ctx, "drop table if exists app_data.dsql; create table app_data.dsql (id int primary key, v text)"); err != nil {
		t.Fatal(err)
	}
	ins, err := db.PrepareContext(ctx, "insert into app_data.dsql (id, v) values ($1, $2)")
	if err != nil {
		t.Fatal(err)
	}
	defer ins.Close()
	sel, err := db.PrepareContext(ctx, "select v from app_data.dsql where id = $1")
	if err != nil {
		t.Fatal(err)
	}
	defer sel.Close()
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				id := w*1000 + i
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := tx.StmtContext(ctx, ins).ExecContext(ctx, id, fmt.Sprint("v", id)); err != nil {
					t.Error(err)
					_ = tx.Rollback()
					return
				}
				if err := tx.Commit(); err != nil {
					t.Error(err)
					return
				}
				var v string
				if err := sel.QueryRowContext(ctx, id).Scan(&v); err != nil || v != fmt.Sprint("v", id) {
					t.Errorf("select %d: %v %q", id, err, v)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	var n int
	if err := db.QueryRowContext(ctx, "select count(*) from app_data.dsql").Scan(&n); err != nil || n != 180 {
		t.Fatalf("rows: %d %v", n, err)
	}
}

func TestPgbenchPreparedInTransactionMode(t *testing.T) {
	r := startRouter(t, tenantOverride("initech", cfgMap{"pool_size": 4}))
	ti := tenants["initech"]
	ctx := testCtx(t, 120*time.Second)
	base := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(r.port), "-U", ti.Login}
	if out, err := command(ctx, ti.LoginPassword, "pgbench", append(base, "-i", "-s", "1", "-q", ti.Database)...).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	out, err := command(ctx, ti.LoginPassword, "pgbench", append(base, "-S", "-M", "prepared", "-c", "16", "-j", "2", "-T", "3", ti.Database)...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench -M prepared: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "number of failed transactions: 0 ") || strings.Contains(s, "aborted") {
		t.Fatalf("pgbench reported failures:\n%s", s)
	}
}

// probe is one kind of session state: set makes it, check tells whether
// the calling session has it.
type probe struct {
	name  string
	set   []string
	check string // returns true when the state is present
}

var probes = []probe{
	{"search_path", []string{"set search_path = app_data"}, "select current_setting('search_path') = 'app_data'"},
	{"statement_timeout", []string{"set statement_timeout = '1234ms'"}, "select current_setting('statement_timeout') = '1234ms'"},
	{"set_config", []string{"select set_config('work_mem', '7777kB', false)"}, "select current_setting('work_mem') = '7777kB'"},
	{"temp_table", []string{"create temp table probe_tmp (x int)"}, "select to_regclass('pg_temp.probe_tmp') is not null"},
	{"listen", []string{"listen probe_chan"}, "select count(*) = 1 from pg_listening_channels() c where c = 'probe_chan'"},
	{"prepare", []string{"prepare probe_stmt as select 1"}, "select count(*) = 1 from pg_prepared_statements where name = 'probe_stmt'"},
	{"hold_cursor", []string{"declare probe_cur cursor with hold for select 1"}, "select count(*) = 1 from pg_cursors where name = 'probe_cur'"},
	{"advisory_lock", []string{"select pg_advisory_lock(4242)"}, "select count(*) = 1 from pg_locks where locktype = 'advisory' and objid = 4242 and pid = pg_backend_pid()"},
}

// Session state never leaks: the pinned client keeps seeing its state
// across transactions; after it leaves, the next client on the very same
// backend sees none of it; another tenant never does.
func TestSessionStateNeverLeaks(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			a := r.connectMode(t, "acme", pgx.QueryExecModeSimpleProtocol)
			pid := queryInt(t, a, "select pg_backend_pid()")
			for _, s := range p.set {
				mustExec(t, a, s)
			}
			for i := 0; i < 3; i++ { // several transactions: still there
				if !queryBool(t, a, p.check) {
					t.Fatalf("the client lost its own %s state in transaction %d", p.name, i)
				}
			}
			closeConn(a)
			b := r.connectMode(t, "acme", pgx.QueryExecModeSimpleProtocol)
			if got := queryInt(t, b, "select pg_backend_pid()"); got != pid {
				t.Fatalf("next client got backend %d, want the same backend %d", got, pid)
			}
			if queryBool(t, b, p.check) {
				t.Fatalf("%s state leaked to the next client of the same backend", p.name)
			}
			if p.name == "advisory_lock" {
				var ok bool
				if err := b.QueryRow(ctx, "select pg_try_advisory_lock(4242)").Scan(&ok); err != nil || !ok {
					t.Fatalf("advisory lock still held after its client left: %v", err)
				}
				mustExec(t, b, "select pg_advisory_unlock(4242)")
			}
			g := r.connectMode(t, "globex", pgx.QueryExecModeSimpleProtocol)
			if queryBool(t, g, p.check) {
				t.Fatalf("%s state visible to another tenant", p.name)
			}
		})
	}
}

func TestSetInRolledBackTransactionDoesNotLeak(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	a := r.connect(t, "acme")
	b := r.connect(t, "acme")
	ctx := testCtx(t, 20*time.Second)
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "set search_path = app_data"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, a, "show search_path"); got == "app_data" {
		t.Fatalf("rolled back SET still in effect: %q", got)
	}
	closeConn(a)
	if got := queryString(t, b, "show search_path"); got == "app_data" {
		t.Fatalf("rolled back SET leaked: %q", got)
	}
}

func TestSetRoleRefused(t *testing.T) {
	r := startRouter(t)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		c := r.connectMode(t, "acme", mode)
		ctx := testCtx(t, 10*time.Second)
		for _, q := range []string{"set role postgres", "SET SESSION AUTHORIZATION postgres", "set local role globex_user",
			"select set_config('role', 'postgres', false)"} {
			_, err := c.Exec(ctx, q)
			pe := wantCode(t, err, "42501")
			if !strings.Contains(pe.Message, "pgbridge") {
				t.Errorf("%s: message %q", q, pe.Message)
			}
		}
		if got := queryString(t, c, "select current_user"); got != "acme_user" {
			t.Fatalf("current_user = %q", got)
		}
	}
}

// Settings under which the router would read SQL other than the server
// does are refused at login (the lexer could be shown a harmless SELECT
// that hides a SET ROLE); set later, in any way, they end the session
// (TestSettingsTheRouterCannotFollowLater). An idle_session_timeout would
// end a pooled backend while it waits for the next client.
func TestStartupSettingsTheRouterCannotFollow(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}),
		tenantOverride("initech", cfgMap{"pool_mode": "session"}))
	for opt, names := range map[string]string{
		"options='-c standard_conforming_strings=off'": "standard_conforming_strings=off",
		"options='-c client_encoding=SJIS'":            `client encoding "SJIS"`,
		"client_encoding=big5":                         `client encoding "big5"`,
		"client_encoding=WIN932":                       `client encoding "WIN932"`,
		"client_encoding=windows950":                   `client encoding "windows950"`,
		"options='-c idle_session_timeout=1'":          "idle_session_timeout",
		"options='-c idle_session_timeout=5s'":         "idle_session_timeout",
	} {
		_, err := connectCfg(t, connConfig(t, r.dsn("acme", opt)))
		if pe := wantCode(t, err, "0A000"); pe.Severity != "FATAL" || !strings.Contains(pe.Message, names) {
			t.Errorf("%s: %s %q, want FATAL naming %s", opt, pe.Severity, pe.Message, names)
		}
	}
	for _, opt := range []string{"options='-c standard_conforming_strings=on'", "options='-c standard_conforming_strings=T'",
		"client_encoding=UTF8", "client_encoding=LATIN1", "client_encoding=WIN1252",
		"options='-c idle_session_timeout=0'", "options='-c idle_session_timeout=0ms'"} {
		c, err := connectCfg(t, connConfig(t, r.dsn("acme", opt)))
		if err != nil {
			t.Fatalf("%s: %v", opt, err)
		}
		if n := queryInt(t, c, "select 1"); n != 1 {
			t.Fatal(n)
		}
		closeConn(c)
	}
	// Session mode: the backend is the client's own until it leaves.
	c, err := connectCfg(t, connConfig(t, r.dsn("initech", "options='-c idle_session_timeout=60000'")))
	if err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, c, "show idle_session_timeout"); got != "1min" {
		t.Fatalf("idle_session_timeout %q", got)
	}

}

// The same settings made after login, by SET, SET LOCAL, set_config or
// anything else that makes the backend report them, end the session with
// FATAL 0A000, and its backend is not reused: whatever the session hid
// from the lexer from then on (here a session-level SET and advisory lock
// inside what reads as a string literal with standard_conforming_strings
// on) dies with it. A role's default of off never reaches a backend.
func TestSettingsTheRouterCannotFollowLater(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	const hidden = `SELECT 'a\' , ' ; SET work_mem = 77; SELECT pg_advisory_lock(4242), ''`
	for name, steps := range map[string][]string{
		"set local":       {"begin", "set local standard_conforming_strings = off"},
		"set":             {"set standard_conforming_strings = off"},
		"set_config":      {"begin", "select set_config('standard_conforming_strings', 'off', true)"},
		"client_encoding": {"set client_encoding = 'SJIS'"},
	} {
		says := "standard_conforming_strings was set to off"
		if name == "client_encoding" {
			says = "client_encoding was set to SJIS"
		}
		a := hijackDSN(t, r.dsn("acme"))
		for _, q := range steps[:len(steps)-1] {
			if _, codes := simpleQuery(t, a, q); len(codes) > 0 {
				t.Fatalf("%s: %s: %v", name, q, codes)
			}
		}
		// The setting and the statement hidden behind it in one write,
		// as a client that pipelines sends them.
		sendAll(t, a, &pgproto3.Query{String: steps[len(steps)-1]}, &pgproto3.Query{String: hidden})
		msgs, err := receiveUntilClosed(a, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: still open: %v (messages %v)", name, err, msgs)
		}
		var fatal *pgproto3.ErrorResponse
		for _, m := range msgs {
			if e, ok := m.(*pgproto3.ErrorResponse); ok && e.Severity == "FATAL" {
				fatal = e
			}
		}
		if fatal == nil || fatal.Code != "0A000" || !strings.Contains(fatal.Message, says) {
			t.Fatalf("%s: messages %v, want a FATAL 0A000 saying %q", name, msgs, says)
		}
		b := r.connect(t, "acme") // pool_size 1: the backend a left, or a new one
		if got := queryString(t, b, "show work_mem"); got != "4MB" {
			t.Errorf("%s: another client of the tenant sees work_mem = %s", name, got)
		}
		if n := queryInt(t, b, "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"); n != 0 {
			t.Errorf("%s: another client's backend holds %d advisory lock(s)", name, n)
		}
		closeConn(b)
	}

	role := tenants["acme"].User
	if err := cluster.Exec(testCtx(t, 15*time.Second), "postgres", "alter role "+role+" set standard_conforming_strings = off"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.Exec(context.Background(), "postgres", "alter role "+role+" reset standard_conforming_strings")
	})
	r2 := startRouter(t)
	c := r2.connect(t, "acme")
	if got := queryString(t, c, "show standard_conforming_strings"); got != "on" {
		t.Errorf("with the role's default off, a backend has standard_conforming_strings = %s", got)
	}
}

// A SET of one parameter outside a transaction block, alone in its Query
// (pgjdbc sends SET extra_float_digits and SET application_name after
// login), does not pin the session: the client's parameters follow it, set
// on whichever backend serves the client and reset before another
// client's request. One that fails changes nothing; one inside a
// transaction block still pins.
func TestFollowedSet(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	a, b := hijackDSN(t, r.dsn("acme")), hijackDSN(t, r.dsn("acme"))
	const settings = "select current_setting('extra_float_digits') || '|' || current_setting('application_name') || '|' || current_setting('work_mem')"
	bWants := oneRow(t, b, settings)
	for _, q := range []string{"SET extra_float_digits = 3", "set application_name = 'a''s app'"} {
		if _, codes := simpleQuery(t, a, q); len(codes) > 0 {
			t.Fatalf("%s: %v", q, codes)
		}
	}
	// As pgjdbc sends them: Parse, Bind, Execute, Sync.
	mustReady(t, a, &pgproto3.Parse{Query: "set work_mem to '8MB'"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	for i := range 3 { // one backend, taken in turns
		if got := oneRow(t, a, settings); got != "3|a's app|8MB" {
			t.Fatalf("round %d: a sees %s", i, got)
		}
		if got := oneRow(t, b, settings); got != bWants {
			t.Fatalf("round %d: b sees %s", i, got)
		}
	}
	if _, codes := simpleQuery(t, a, "set work_mem = 'lots'"); len(codes) != 1 || codes[0] != "22023" {
		t.Fatalf("a bad value: errors %v, want 22023", codes)
	}
	if _, codes := simpleQuery(t, a, "reset extra_float_digits"); len(codes) > 0 {
		t.Fatal(codes)
	}
	oneRow(t, b, "select 1")
	if got := oneRow(t, a, settings); got != "1|a's app|8MB" {
		t.Fatalf("a after a failed SET and a RESET sees %s", got)
	}
	if n := r.counter("acme", "pin", "set"); n != 0 {
		t.Fatalf("set pins = %d, want 0", n)
	}
	// A prepared SET that is never executed changes nothing.
	mustReady(t, a, &pgproto3.Parse{Name: "never", Query: "set work_mem = '1MB'"}, &pgproto3.Sync{})
	if got := oneRow(t, a, settings); got != "1|a's app|8MB" {
		t.Fatalf("a after preparing a SET sees %s", got)
	}
	// Inside a transaction block a SET is undone by ROLLBACK, and
	// a Query of several statements is not one SET: both pin.
	for _, qs := range [][]string{{"begin", "set work_mem = '16MB'", "commit"}, {"set work_mem = '16MB'; select 1"}} {
		c := hijackDSN(t, r.dsn("acme"))
		for _, q := range qs {
			if _, codes := simpleQuery(t, c, q); len(codes) > 0 {
				t.Fatalf("%s: %v", q, codes)
			}
		}
		c.Conn.Close()
	}
	if n := r.counter("acme", "pin", "set"); n != 2 {
		t.Fatalf("set pins = %d, want 2", n)
	}
}

// Only a SET the router can follow exactly is followed; the others pin,
// and behave as on PostgreSQL on their own backend: a parameter that
// set_config cannot set at any time (transaction_deferrable), one whose SET
// has an effect (seed), one that SET quotes as a list (search_path), one
// whose new value depends on the old (DateStyle), and a
// SET with another Execute in its segment (after a BEGIN, or before a
// ROLLBACK that undoes it). A followed integer constant is read as SET
// reads it.
func TestFollowedSetLimits(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	pins := uint64(0)
	wantPinned := func(what string, pinned bool) {
		t.Helper()
		if pinned {
			pins++
		}
		if n := r.counter("acme", "pin", "set"); n != pins {
			t.Fatalf("%s: set pins = %d, want %d", what, n, pins)
		}
	}
	for _, c := range []struct{ set, show, want string }{
		{"set transaction_deferrable = on", "show transaction_deferrable", "off"}, // (its own transaction's)
		{"set seed = 0.5", "select 1", "1"},
		{`set search_path = "MySchema"`, "show search_path", `"MySchema"`},
		{`set search_path = 'a, b'`, "show search_path", `"a, b"`},
		// SET DateStyle keeps the part of the old value it does not name.
		{"set datestyle = 'German'", "select current_setting('DateStyle')", "German, DMY"},
		{"set datestyle = 'SQL'", "select current_setting('DateStyle')", "SQL, MDY"},
	} {
		a := hijackDSN(t, r.dsn("acme"))
		oneRow(t, a, "select 1")
		if _, codes := simpleQuery(t, a, c.set); len(codes) > 0 {
			t.Fatalf("%s: %v", c.set, codes)
		}
		wantPinned(c.set, true)
		if got := oneRow(t, a, c.show); got != c.want {
			t.Errorf("%s: %s, want %s", c.set, got, c.want)
		}
		a.Conn.Close() // gives the pinned backend back, reset
	}
	a := hijackDSN(t, r.dsn("acme"))
	oneRow(t, a, "select 1")
	mustReady(t, a, &pgproto3.Parse{Query: "begin"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "set application_name = 'inblock'"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantPinned("SET after BEGIN", true)
	if _, codes := simpleQuery(t, a, "commit"); len(codes) > 0 {
		t.Fatal(codes)
	}
	if got := oneRow(t, a, "show application_name"); got != "inblock" {
		t.Errorf("SET after BEGIN, after COMMIT: %s", got)
	}
	a.Conn.Close()

	a = hijackDSN(t, r.dsn("acme"))
	before := oneRow(t, a, "show application_name")
	mustReady(t, a, &pgproto3.Parse{Query: "set application_name = 'rolledback'"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "rollback"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantPinned("SET before ROLLBACK", true)
	if got := oneRow(t, a, "show application_name"); got != before {
		t.Errorf("SET rolled back in its segment: %s, want %s", got, before)
	}
	a.Conn.Close()

	a, b := hijackDSN(t, r.dsn("acme")), hijackDSN(t, r.dsn("acme"))
	if _, codes := simpleQuery(t, a, "set application_name = 007"); len(codes) > 0 {
		t.Fatal(codes)
	}
	wantPinned("followed", false)
	oneRow(t, b, "select 1") // b takes the backend: a's setting is set again
	if got := oneRow(t, a, "show application_name"); got != "7" {
		t.Errorf("application_name = 007 after a backend change: %s, want 7", got)
	}
}

// A COPY from the client that the client has ended (CopyDone) is the
// server's turn, however long it takes to finish: not idle.
func TestCopyEndedIsNotIdle(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"idle_in_transaction_timeout": "400ms"}))
	setup := r.connect(t, "acme")
	scratchTable(t, setup, "acme", "copy_slow", "id int")
	db := tenants["acme"].Database
	ctx := testCtx(t, 15*time.Second)
	if err := cluster.Exec(ctx, db, `create or replace function public.copy_slow_trg() returns trigger language plpgsql as $$ begin perform pg_sleep(1.5); return null; end $$`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.Exec(context.Background(), db, "drop function if exists public.copy_slow_trg() cascade")
	})
	if err := cluster.Exec(ctx, db, `create trigger copy_slow_trg after insert on copy_slow for each statement execute function public.copy_slow_trg()`); err != nil {
		t.Fatal(err)
	}
	hc := hijackDSN(t, r.dsn("acme"))
	startCopy(t, hc, "copy copy_slow from stdin")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n2\n")}, &pgproto3.CopyDone{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("COPY: %v", codes)
	}
	if n := r.counter("acme", "close", "idle_in_transaction"); n != 0 {
		t.Fatalf("idle_in_transaction closes = %d", n)
	}
}

// A function called through the fastpath interface (FunctionCall) may
// leave session state the router cannot see, here set_config: it pins the
// session, and the backend is reset before the tenant's next client.
func TestFunctionCallPins(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	oid := uint32(superInt(t, tenants["acme"].Database, "select 'pg_catalog.set_config(text,text,boolean)'::regprocedure::oid::bigint"))
	a := hijackDSN(t, r.dsn("acme"))
	sendAll(t, a, &pgproto3.FunctionCall{Function: oid, ArgFormatCodes: []uint16{0},
		Arguments: [][]byte{[]byte("work_mem"), []byte("77MB"), []byte("false")}})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) > 0 {
		t.Fatalf("set_config by FunctionCall: %v", codes)
	}
	if rows, _ := simpleQuery(t, a, "show work_mem"); len(rows) != 1 || rows[0] != "77MB" {
		t.Fatalf("a's work_mem %v", rows)
	}
	if n := r.counter("acme", "pin", "function_call"); n != 1 {
		t.Fatalf("function_call pins %d", n)
	}
	a.Conn.Close()
	b := r.connect(t, "acme") // pool_size 1: the same backend, once a has gone
	if got := queryString(t, b, "show work_mem"); got == "77MB" {
		t.Fatalf("another client of the tenant sees work_mem=%s", got)
	}
}

// Startup parameters are the client's own in every transaction and never
// reach another client of the same backend.
func TestStartupParametersFollowTheClient(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	a := r.connectMode(t, "acme", pgx.QueryExecModeExec, "application_name=client_a", "options='-c search_path=app_data -c work_mem=5MB'")
	b := r.connectMode(t, "acme", pgx.QueryExecModeExec)
	for i := 0; i < 4; i++ {
		if got := queryString(t, a, "select current_setting('application_name') || ' ' || current_setting('search_path') || ' ' || current_setting('work_mem')"); got != "client_a app_data 5MB" {
			t.Fatalf("round %d: client a sees %q", i, got)
		}
		if got := queryString(t, b, "select current_setting('search_path') || ' ' || current_setting('work_mem')"); got == "app_data 5MB" || strings.Contains(got, "app_data") || strings.Contains(got, "5MB") {
			t.Fatalf("round %d: client b sees a's parameters: %q", i, got)
		}
		if got := queryString(t, b, "select current_setting('application_name')"); got == "client_a" {
			t.Fatalf("client b sees a's application_name")
		}
	}
	if a.PgConn().ParameterStatus("application_name") != "client_a" {
		t.Fatalf("ParameterStatus application_name = %q", a.PgConn().ParameterStatus("application_name"))
	}
}

// A pipeline with an error in the middle: the rest up to Sync is skipped,
// exactly as PostgreSQL does, and the session goes on with its statements.
func TestPipelineErrorInTheMiddle(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	c := r.connectMode(t, "globex", pgx.QueryExecModeCacheStatement)
	ctx := testCtx(t, 20*time.Second)
	pc := c.PgConn()
	p := pc.StartPipeline(ctx)
	p.SendPrepare("s_ok", "select $1::int + 1", nil)
	p.SendQueryParams("select 1/0", nil, nil, nil, nil)
	p.SendPrepare("s_skipped", "select 2", nil)
	p.SendQueryPrepared("s_ok", [][]byte{[]byte("41")}, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetResults(); err != nil { // s_ok described
		t.Fatalf("prepare: %v", err)
	}
	// 1/0 fails when the backend plans it, at Bind.
	_, err := p.GetResults()
	wantCode(t, err, "22012")
	for {
		res, err := p.GetResults()
		if err != nil {
			t.Fatalf("after error: %v", err)
		}
		if _, ok := res.(*pgconn.PipelineSync); ok {
			break
		}
		t.Fatalf("result %T after the error, before Sync: PostgreSQL skips these", res)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// s_ok survived (parsed before the error), s_skipped never existed.
	rr := pc.ExecPrepared(ctx, "s_ok", [][]byte{[]byte("41")}, nil, nil)
	got := rr.Read()
	if got.Err != nil || len(got.Rows) != 1 || string(got.Rows[0][0]) != "42" {
		t.Fatalf("s_ok after the pipeline: %v %v", got.Err, got.Rows)
	}
	rr = pc.ExecPrepared(ctx, "s_skipped", nil, nil, nil)
	wantCode(t, rr.Read().Err, "26000")
	if n := queryInt(t, c, "select 5"); n != 5 {
		t.Fatal(n)
	}
}

func TestDeallocateAllAndParseInOnePipeline(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	c := r.connectMode(t, "globex", pgx.QueryExecModeCacheStatement)
	ctx := testCtx(t, 20*time.Second)
	pc := c.PgConn()
	if _, err := pc.Prepare(ctx, "before", "select 1", nil); err != nil {
		t.Fatal(err)
	}
	p := pc.StartPipeline(ctx)
	p.SendQueryParams("deallocate all", nil, nil, nil, nil)
	p.SendPrepare("after", "select $1::int * 2", nil)
	p.SendQueryPrepared("after", [][]byte{[]byte("21")}, nil, nil)
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	var rows [][]byte
	for {
		res, err := p.GetResults()
		if err != nil {
			t.Fatal(err)
		}
		if rr, ok := res.(*pgconn.ResultReader); ok {
			r := rr.Read()
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			for _, row := range r.Rows {
				rows = append(rows, row[0])
			}
		}
		if _, ok := res.(*pgconn.PipelineSync); ok {
			break
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || string(rows[0]) != "42" {
		t.Fatalf("rows %q", rows)
	}
	wantCode(t, pc.ExecPrepared(ctx, "before", nil, nil, nil).Read().Err, "26000")
	// A second client on the same backend still works with its own names.
	d := r.connectMode(t, "globex", pgx.QueryExecModeCacheStatement)
	if n := queryInt(t, d, "select $1::int", 7); n != 7 {
		t.Fatal(n)
	}
	if n := queryInt(t, c, "select $1::int + 0", 8); n != 8 {
		t.Fatal(n)
	}
	// DEALLOCATE ALL from the client drops its statements, as PostgreSQL
	// does: the old name is gone, new statements work.
	mustExec(t, c, "deallocate all")
	wantCode(t, pc.ExecPrepared(ctx, "after", [][]byte{[]byte("1")}, nil, nil).Read().Err, "26000")
	if _, err := pc.Prepare(ctx, "again", "select $1::int + 1", nil); err != nil {
		t.Fatal(err)
	}
	if got := pc.ExecPrepared(ctx, "again", [][]byte{[]byte("9")}, nil, nil).Read(); got.Err != nil || string(got.Rows[0][0]) != "10" {
		t.Fatalf("after DEALLOCATE ALL: %v", got.Err)
	}
}

func TestCopyThroughTheRouter(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1}))
	c := r.connect(t, "umbrella")
	ctx := testCtx(t, 60*time.Second)
	mustExec(t, c, "drop table if exists app_data.copyt; create table app_data.copyt (id int primary key, v text)")
	rows := make([][]any, 5000)
	for i := range rows {
		rows[i] = []any{i, fmt.Sprint("row", i)}
	}
	n, err := c.CopyFrom(ctx, pgx.Identifier{"app_data", "copyt"}, []string{"id", "v"}, pgx.CopyFromRows(rows))
	if err != nil || n != 5000 {
		t.Fatalf("CopyFrom: %d %v", n, err)
	}
	// A constraint violation mid-stream: the whole COPY fails, the session
	// and the backend stay usable.
	_, err = c.CopyFrom(ctx, pgx.Identifier{"app_data", "copyt"}, []string{"id", "v"}, pgx.CopyFromRows([][]any{{100000, "x"}, {1, "dup"}}))
	wantCode(t, err, "23505")
	// CopyFail sent by the client.
	_, err = c.CopyFrom(ctx, pgx.Identifier{"app_data", "copyt"}, []string{"id", "v"}, pgx.CopyFromFunc(func() ([]any, error) {
		return nil, errors.New("client gave up")
	}))
	if err == nil {
		t.Fatal("COPY with a failing source succeeded")
	}
	if got := queryInt(t, c, "select count(*) from app_data.copyt"); got != 5000 {
		t.Fatalf("rows after failed COPYs: %d", got)
	}
	// COPY TO STDOUT.
	var sb strings.Builder
	tag, err := c.PgConn().CopyTo(ctx, &sb, "copy (select id from app_data.copyt order by id) to stdout")
	if err != nil || tag.RowsAffected() != 5000 || !strings.HasPrefix(sb.String(), "0\n1\n2\n") {
		t.Fatalf("CopyTo: %v %v", tag, err)
	}
	// psql \copy both ways.
	ti := tenants["umbrella"]
	dsn := r.dsn("umbrella")
	out, err := command(ctx, ti.LoginPassword, "psql", dsn, "-v", "ON_ERROR_STOP=1", "-Atc",
		`\copy (select id, v from app_data.copyt where id < 3 order by id) to stdout`).CombinedOutput()
	if err != nil || string(out) != "0\trow0\n1\trow1\n2\trow2\n" {
		t.Fatalf("psql \\copy to: %v %q", err, out)
	}
	cmd := command(ctx, ti.LoginPassword, "psql", dsn, "-v", "ON_ERROR_STOP=1", "-c", `\copy app_data.copyt (id, v) from stdin`)
	cmd.Stdin = strings.NewReader("9001\tpsql-a\n9002\tpsql-b\n\\.\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql \\copy from: %v %s", err, out)
	}
	if got := queryInt(t, c, "select count(*) from app_data.copyt where id > 9000"); got != 2 {
		t.Fatalf("rows from psql: %d", got)
	}
}

// A client that disconnects in the middle of COPY FROM STDIN never leaves
// its backend in a COPY state for the next client, and its rows are gone.
func TestClientDisconnectMidCopy(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1}))
	c := r.connect(t, "umbrella")
	mustExec(t, c, "create table if not exists app_data.copy2 (id int)")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := c.PgConn().CopyFrom(context.Background(), pr, "copy app_data.copy2 from stdin")
		done <- err
	}()
	if _, err := pw.Write([]byte("1\n2\n3\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the rows reach the backend
	_ = c.PgConn().Conn().Close()
	_ = pw.Close()
	<-done
	next := r.connect(t, "umbrella")
	if n := queryInt(t, next, "select count(*) from app_data.copy2"); n != 0 {
		t.Fatalf("rows of an abandoned COPY are visible: %d", n)
	}
	if n := queryInt(t, next, "select 1"); n != 1 {
		t.Fatal(n)
	}
}

// A 200 MB result streams through with bounded router memory; notices,
// notifications and ParameterStatus changes reach the client.
func TestBigResultAndAsyncMessages(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 2}))
	ctx := testCtx(t, 120*time.Second)
	var notices []string
	var mu sync.Mutex
	cc := connConfig(t, r.dsn("umbrella"))
	cc.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { mu.Lock(); notices = append(notices, n.Message); mu.Unlock() }
	c, err := connectCfg(t, cc)
	if err != nil {
		t.Fatal(err)
	}

	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	rows, err := c.Query(ctx, "select repeat('x', 1000) from generate_series(1, 200000)")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for rows.Next() {
		total += len(rows.RawValues()[0])
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-sampled
	if total != 200_000_000 {
		t.Fatalf("read %d bytes", total)
	}
	// Client and router share this process: together they must stay far
	// below the size of the result.
	if p := peak.Load(); p > 100<<20 {
		t.Fatalf("heap in use peaked at %d MB while streaming 200 MB", p>>20)
	}

	mustExec(t, c, "do $$ begin raise notice 'hello from the backend'; end $$")
	mu.Lock()
	gotNotice := len(notices) == 1 && notices[0] == "hello from the backend"
	mu.Unlock()
	if !gotNotice {
		t.Fatalf("notices: %q", notices)
	}
	mustExec(t, c, "set application_name = 'renamed'")
	if got := c.PgConn().ParameterStatus("application_name"); got != "renamed" {
		t.Fatalf("ParameterStatus application_name = %q", got)
	}
	mustExec(t, c, "listen bigchan")
	other := r.connect(t, "umbrella")
	mustExec(t, other, "select pg_notify('bigchan', 'payload-1')")
	n, err := c.WaitForNotification(ctx)
	if err != nil || n.Channel != "bigchan" || n.Payload != "payload-1" {
		t.Fatalf("notification: %+v %v", n, err)
	}
}

func queryBool(t *testing.T, c *pgx.Conn, q string) bool {
	t.Helper()
	var b bool
	if err := c.QueryRow(context.Background(), q).Scan(&b); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return b
}

// DEALLOCATE name and DISCARD ALL sent by the client act on the client's
// own statements, whichever backend holds them.
func TestDeallocateNameAndDiscardAll(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 2}))
	c := r.connectMode(t, "globex", pgx.QueryExecModeSimpleProtocol)
	ctx := testCtx(t, 20*time.Second)
	pc := c.PgConn()
	for _, name := range []string{"d1", "d2", "d3"} {
		if _, err := pc.Prepare(ctx, name, "select 1", nil); err != nil {
			t.Fatal(err)
		}
	}
	// Another client keeps one backend busy in a transaction now and then,
	// so the DEALLOCATE may land on a backend that never saw d1.
	other := r.connect(t, "globex")
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pc.Exec(ctx, "deallocate d1").ReadAll()
	if err != nil || len(got) != 1 || got[0].CommandTag.String() != "DEALLOCATE" {
		t.Fatalf("deallocate d1: %v %+v", err, got)
	}
	_ = tx.Rollback(ctx)
	wantCode(t, pc.ExecPrepared(ctx, "d1", nil, nil, nil).Read().Err, "26000")
	if got := pc.ExecPrepared(ctx, "d2", nil, nil, nil).Read(); got.Err != nil {
		t.Fatalf("d2 after deallocating d1: %v", got.Err)
	}
	mustExec(t, c, "discard all")
	wantCode(t, pc.ExecPrepared(ctx, "d2", nil, nil, nil).Read().Err, "26000")
	wantCode(t, pc.ExecPrepared(ctx, "d3", nil, nil, nil).Read().Err, "26000")
	if _, err := pc.Prepare(ctx, "d2", "select 2", nil); err != nil {
		t.Fatalf("prepare after DISCARD ALL: %v", err)
	}
	if got := pc.ExecPrepared(ctx, "d2", nil, nil, nil).Read(); got.Err != nil || string(got.Rows[0][0]) != "2" {
		t.Fatalf("d2 redefined: %v", got.Err)
	}
}

// More statements than a backend keeps: the least recently used are closed
// on the backend and prepared again when the client uses them.
func TestBackendStatementLimitEvictsAndRecreates(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	c := r.connect(t, "globex")
	ctx := testCtx(t, 60*time.Second)
	pc := c.PgConn()
	const n = 300 // above the per-backend limit of 250
	for i := 0; i < n; i++ {
		if _, err := pc.Prepare(ctx, fmt.Sprint("s", i), fmt.Sprintf("select %d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := queryInt(t, c, "select count(*) from pg_prepared_statements"); got > 250 {
		t.Fatalf("backend holds %d statements, the limit is 250", got)
	}
	for _, i := range []int{0, 1, 299, 2} {
		got := pc.ExecPrepared(ctx, fmt.Sprint("s", i), nil, nil, nil).Read()
		if got.Err != nil || string(got.Rows[0][0]) != fmt.Sprint(i) {
			t.Fatalf("s%d: %v %q", i, got.Err, got.Rows)
		}
	}
}

// listen.max_client_connections caps clients across all tenants.
func TestRouterWideClientConnectionCap(t *testing.T) {
	r := startRouter(t, cfgMap{"listen": cfgMap{"max_client_connections": 2}})
	a := r.connect(t, "acme")
	r.connect(t, "globex")
	_, err := connectCfg(t, connConfig(t, r.dsn("initech")))
	pe := wantCode(t, err, "53300")
	if pe.Severity != "FATAL" || !strings.Contains(pe.Message, "max_client_connections=2") {
		t.Errorf("got %s %q", pe.Severity, pe.Message)
	}
	if got := queryInt(t, a, "select 1"); got != 1 {
		t.Fatal("a connected client stopped working")
	}
	closeConn(a)
	r.eventuallyLogsIn(t, "initech")
}

// One client cannot make the router keep unbounded statements: past the
// limit a new statement fails with 54000 when it runs.
func TestClientStatementLimit(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	c := r.connect(t, "globex")
	ctx := testCtx(t, 120*time.Second)
	pc := c.PgConn()
	const limit = 10000
	p := pc.StartPipeline(ctx)
	for i := 0; i < limit; i++ {
		p.SendPrepare(fmt.Sprint("l", i), "select 1", nil)
	}
	if err := p.Sync(); err != nil {
		t.Fatal(err)
	}
	for {
		res, err := p.GetResults()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := res.(*pgconn.PipelineSync); ok {
			break
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Prepare(ctx, "one_too_many", "select 1", nil); err != nil {
		t.Fatal(err)
	}
	pe := wantCode(t, pc.ExecPrepared(ctx, "one_too_many", nil, nil, nil).Read().Err, "54000")
	if !strings.Contains(pe.Message, "too many prepared statements") {
		t.Errorf("message %q", pe.Message)
	}
	// The statements within the limit still work.
	if got := pc.ExecPrepared(ctx, "l9999", nil, nil, nil).Read(); got.Err != nil || string(got.Rows[0][0]) != "1" {
		t.Fatalf("l9999: %v", got.Err)
	}
}

// COPY FROM STDIN run with the extended protocol, as libpq's PQexecParams
// (psycopg 3, tokio-postgres) sends it: Parse, Bind, Describe, Execute and
// Sync, then the data, CopyDone (or CopyFail) and another Sync. PostgreSQL
// ignores the first Sync, which reaches it in copy-in mode, so a single
// ReadyForQuery answers both: the backend must still go back to the pool
// at the end, and the session stay usable. A COPY that fails leaves the
// router unable to tell whether the first Sync was read (copysync.go): the
// session then keeps its backend until it leaves.
func TestExtendedProtocolCopyIn(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1, "pool_wait_timeout": "2s"}))
	setup := r.connect(t, "umbrella")
	mustExec(t, setup, "drop table if exists app_data.copyx; create table app_data.copyx (id int)")

	hc := hijackDSN(t, r.dsn("umbrella"))
	_ = hc.Conn.SetDeadline(time.Now().Add(30 * time.Second))
	fe := hc.Frontend
	// untilReady reads to the next ReadyForQuery (or CopyInResponse when
	// copyIn), returning the last CommandComplete tag and error code.
	untilReady := func(copyIn bool) (tag, code string) {
		t.Helper()
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("receive: %v", err)
			}
			switch m := m.(type) {
			case *pgproto3.CommandComplete:
				tag = string(m.CommandTag)
			case *pgproto3.ErrorResponse:
				code = m.Code
			case *pgproto3.CopyInResponse:
				if copyIn {
					return tag, code
				}
				t.Fatal("unexpected CopyInResponse")
			case *pgproto3.ReadyForQuery:
				if copyIn {
					t.Fatalf("ReadyForQuery before CopyInResponse (error %q)", code)
				}
				return tag, code
			}
		}
	}
	copyIn := func(data string, fail bool) (tag, code string) {
		t.Helper()
		fe.Send(&pgproto3.Parse{Query: "copy app_data.copyx from stdin"})
		fe.Send(&pgproto3.Bind{})
		fe.Send(&pgproto3.Describe{ObjectType: 'P'})
		fe.Send(&pgproto3.Execute{})
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		untilReady(true)
		fe.Send(&pgproto3.CopyData{Data: []byte(data)})
		if fail {
			fe.Send(&pgproto3.CopyFail{Message: "client gave up"})
		} else {
			fe.Send(&pgproto3.CopyDone{})
		}
		fe.Send(&pgproto3.Sync{})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		return untilReady(false)
	}
	if tag, code := copyIn("1\n2\n3\n", false); tag != "COPY 3" || code != "" {
		t.Fatalf("COPY: tag %q error %q", tag, code)
	}
	// The tenant's only backend went back to the pool: another client of
	// the tenant gets it (it would wait out pool_wait_timeout otherwise).
	if n := queryInt(t, setup, "select count(*) from app_data.copyx"); n != 3 {
		t.Fatalf("rows after the COPY: %d, want 3", n)
	}
	if _, code := copyIn("4\n", true); code != "57014" {
		t.Fatalf("COPY ended by CopyFail: error %q, want 57014", code)
	}
	if _, code := copyIn("not a number\n", false); code != "22P02" {
		t.Fatalf("COPY of bad data: error %q, want 22P02", code)
	}
	fe.Send(&pgproto3.Query{String: "select 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if tag, code := untilReady(false); tag != "SELECT 1" || code != "" {
		t.Fatalf("query after the COPYs: tag %q error %q", tag, code)
	}
	if n := r.counter("umbrella", "pin", "copy_sync"); n != 1 {
		t.Errorf("copy_sync pins %d, want 1", n)
	}
	hc.Conn.Close() // the backend is closed, and a new one serves the next client
	if n := queryInt(t, setup, "select count(*) from app_data.copyx"); n != 3 {
		t.Fatalf("rows after the COPYs: %d, want 3", n)
	}
}

// A simple-protocol DEALLOCATE of a protocol-level statement, on a backend
// that never prepared it, after its text stopped parsing (its table was
// dropped): it succeeds as on PostgreSQL instead of leaving the client
// waiting for an answer that never comes.
func TestDeallocateOnABackendThatLacksTheStatement(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	ti := tenants["globex"]
	c := r.connect(t, "globex")
	ctx := testCtx(t, 30*time.Second)
	mustExec(t, c, "drop table if exists app_data.dealloc_t; create table app_data.dealloc_t (id int)")
	pc := c.PgConn()
	if _, err := pc.Prepare(ctx, "s1", "select count(*) from app_data.dealloc_t", nil); err != nil {
		t.Fatal(err)
	}
	// The backend that holds s1 goes away; the pool dials a new one.
	superInt(t, ti.Database, "select count(pg_terminate_backend(pid)) from pg_stat_activity where usename = $1", ti.User)
	eventually(t, 10*time.Second, "the tenant's backend to exit", func() bool {
		return superInt(t, ti.Database, "select count(*) from pg_stat_activity where usename = $1", ti.User) == 0
	})
	time.Sleep(300 * time.Millisecond) // past the pool's peek-on-hand-out age
	mustExec(t, c, "drop table app_data.dealloc_t")

	res, err := pc.Exec(ctx, "deallocate s1").ReadAll()
	if err != nil {
		t.Fatalf("DEALLOCATE: %v", err)
	}
	if len(res) != 1 || res[0].Err != nil || res[0].CommandTag.String() != "DEALLOCATE" {
		t.Fatalf("DEALLOCATE: %+v", res)
	}
	wantCode(t, pc.ExecPrepared(ctx, "s1", nil, nil, nil).Read().Err, "26000")
	// Inside a failed transaction it fails as PostgreSQL's does.
	if _, err := pc.Prepare(ctx, "s2", "select 2", nil); err != nil {
		t.Fatal(err)
	}
	mustExec(t, c, "begin")
	_, err = c.Exec(ctx, "select 1/0")
	wantCode(t, err, "22012")
	_, err = pc.Exec(ctx, "deallocate s2").ReadAll()
	wantCode(t, err, "25P02")
	mustExec(t, c, "rollback")
	if n := queryInt(t, c, "select 1"); n != 1 {
		t.Fatal(n)
	}
}

// A DEALLOCATE pipelined behind a statement that fails a transaction, on
// a backend that lacks the statement, fails as PostgreSQL's would (25P02)
// instead of leaving the client waiting for an answer that never comes.
func TestDeallocatePipelinedInFailedTransaction(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	ti := tenants["globex"]
	hc := hijackDSN(t, r.dsn("globex"))
	sendAll(t, hc, &pgproto3.Parse{Name: "s1", Query: "select 1"}, &pgproto3.Sync{})
	receiveUntil[*pgproto3.ReadyForQuery](t, hc)
	// The backend that holds s1 goes away; the pool dials a new one.
	superInt(t, ti.Database, "select count(pg_terminate_backend(pid)) from pg_stat_activity where usename = $1", ti.User)
	eventually(t, 10*time.Second, "the tenant's backend to exit", func() bool {
		return superInt(t, ti.Database, "select count(*) from pg_stat_activity where usename = $1", ti.User) == 0
	})
	time.Sleep(300 * time.Millisecond) // past the pool's peek-on-hand-out age
	sendAll(t, hc, &pgproto3.Query{String: "begin"}, &pgproto3.Query{String: "select 1/0"},
		&pgproto3.Query{String: "deallocate s1"}, &pgproto3.Query{String: "rollback"})
	var codes []string
	for range 4 {
		_, c := receiveUntil[*pgproto3.ReadyForQuery](t, hc)
		codes = append(codes, c...)
	}
	if len(codes) != 2 || codes[0] != "22012" || codes[1] != "25P02" {
		t.Fatalf("error codes %v, want [22012 25P02]", codes)
	}
	_, c := simpleQuery(t, hc, "select 1")
	if len(c) != 0 {
		t.Fatal(c)
	}
}

// A client that never prepared an unnamed statement cannot run the one
// another client of the tenant left on a shared backend: PostgreSQL
// reports it missing (26000), as it would without the pool.
func TestUnnamedStatementOfAnotherClient(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	ctx := testCtx(t, 20*time.Second)
	a := r.connect(t, "globex").PgConn()
	if _, err := a.Prepare(ctx, "", "select 42", nil); err != nil {
		t.Fatal(err)
	}
	b := r.connect(t, "globex").PgConn()
	wantCode(t, b.ExecPrepared(ctx, "", nil, nil, nil).Read().Err, "26000")
	// The owner still runs its own, re-created where needed.
	if res := a.ExecPrepared(ctx, "", nil, nil, nil).Read(); res.Err != nil || string(res.Rows[0][0]) != "42" {
		t.Fatalf("owner's unnamed statement: %v %q", res.Err, res.Rows)
	}
}

// A startup parameter the server refuses ends the session at its first
// request, as PostgreSQL would have refused the login, rather than letting
// it run with the previous client's settings; and neither that nor a
// DISCARD ALL that fails inside a transaction block leaves one client's
// settings to the next.
func TestRefusedStartupParameters(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	ctx := testCtx(t, 30*time.Second)
	defaultPath := queryString(t, r.connect(t, "acme"), "select current_setting('search_path')")

	b := r.connectMode(t, "acme", pgx.QueryExecModeExec, "options='-c search_path=app_data'")
	if got := queryString(t, b, "select current_setting('search_path')"); got != "app_data" {
		t.Fatalf("search_path %q", got)
	}
	for i := 0; i < 2; i++ { // the second time from the same tenant too
		c := r.connectMode(t, "acme", pgx.QueryExecModeExec, "options='-c work_mem=lots'")
		_, err := c.Exec(ctx, "select 1")
		if pe := wantCode(t, err, "22023"); pe.Severity != "FATAL" || !strings.Contains(pe.Message, "work_mem") {
			t.Fatalf("refused parameter: %s %q", pe.Severity, pe.Message)
		}
	}
	d := r.connectMode(t, "acme", pgx.QueryExecModeExec)
	if got := queryString(t, d, "select current_setting('search_path')"); got != defaultPath {
		t.Fatalf("after a refused parameter set, the next client sees search_path %q, want %q", got, defaultPath)
	}

	// DISCARD ALL fails inside a transaction block: the backend keeps e's
	// setting, and the next client must not inherit it.
	e := r.connectMode(t, "acme", pgx.QueryExecModeExec, "options='-c search_path=app_data'")
	mustExec(t, e, "begin")
	_, err := e.Exec(ctx, "discard all")
	wantCode(t, err, "25001")
	mustExec(t, e, "rollback")
	if got := queryString(t, d, "select current_setting('search_path')"); got != defaultPath {
		t.Fatalf("after a failed DISCARD ALL, the next client sees search_path %q, want %q", got, defaultPath)
	}
	if got := queryString(t, e, "select current_setting('search_path')"); got != "app_data" {
		t.Fatalf("e's own search_path %q", got)
	}
	// DEALLOCATE ALL drops statements, not parameters.
	mustExec(t, e, "deallocate all")
	if got := queryString(t, d, "select current_setting('search_path')"); got != defaultPath {
		t.Fatalf("after DEALLOCATE ALL, the next client sees search_path %q, want %q", got, defaultPath)
	}
}

// receiveUntil reads backend messages from hc until one of type T arrives,
// returning the rows' first columns and the error codes seen on the way.
func receiveUntil[T pgproto3.BackendMessage](t *testing.T, hc *pgconn.HijackedConn) (rows, codes []string) {
	t.Helper()
	_ = hc.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		m, err := hc.Frontend.Receive()
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			codes = append(codes, m.Code)
		}
		if _, ok := m.(T); ok {
			return rows, codes
		}
	}
}

func sendAll(t *testing.T, hc *pgconn.HijackedConn, msgs ...pgproto3.FrontendMessage) {
	t.Helper()
	for _, m := range msgs {
		hc.Frontend.Send(m)
	}
	if err := hc.Frontend.Flush(); err != nil {
		t.Fatal(err)
	}
}

// The router re-creates a client's unnamed statement on a backend that
// holds another's; when the backend skips that Parse (an earlier error in
// the same pipeline), the books must not say it holds the client's, or the
// client's next Bind runs the other client's statement.
func TestSkippedUnnamedReparse(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	c := hijackDSN(t, r.dsn("globex"))
	x := hijackDSN(t, r.dsn("globex"))
	parseUnnamed := func(hc *pgconn.HijackedConn, text string) {
		t.Helper()
		sendAll(t, hc, &pgproto3.Parse{Query: "select '" + text + "'"}, &pgproto3.Sync{})
		if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
			t.Fatalf("parse: %v", codes)
		}
	}
	parseUnnamed(c, "c-own")
	parseUnnamed(x, "x-secret")
	// An error at the first Bind: the backend skips the rest up to Sync,
	// including the Parse the router puts before the Bind of "".
	sendAll(t, c,
		&pgproto3.Parse{Name: "n1", Query: "select 1/0"}, &pgproto3.Bind{PreparedStatement: "n1"}, &pgproto3.Execute{},
		&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, c); len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("pipeline errors %v, want [22012]", codes)
	}
	sendAll(t, c, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, c)
	if len(codes) > 0 || len(rows) != 1 || rows[0] != "c-own" {
		t.Fatalf("client's unnamed statement returned %v (errors %v), want [c-own]", rows, codes)
	}
}

// A CancelRequest reaches a statement sent without Sync (Execute, Flush):
// it is running although no ReadyForQuery is awaited.
func TestCancelWithoutSync(t *testing.T) {
	r := startRouter(t)
	hc := hijackDSN(t, r.dsn("acme"))
	start := time.Now()
	sendAll(t, hc, &pgproto3.Parse{Query: "select pg_sleep(10)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	waitActive(t, tenants["acme"].User, "select pg_sleep(10)")
	sendCancel(t, r, rawKey{pid: hc.PID, secret: hc.SecretKey})
	if _, codes := receiveUntil[*pgproto3.ErrorResponse](t, hc); codes[0] != "57014" {
		t.Fatalf("error %v, want 57014", codes)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("the statement ran %s: the cancel did not reach it", d)
	}
	sendAll(t, hc, &pgproto3.Sync{})
	receiveUntil[*pgproto3.ReadyForQuery](t, hc)
}

// A simple-protocol COPY FROM STDIN that fails on data sent in its own
// batch: the backend answers ErrorResponse and ReadyForQuery at once, and
// the CopyDone the client sends after it must not keep (or take) a
// backend. The tenant's only backend serves the next client at once.
func TestFailedCopyReleasesTheBackend(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1, "pool_wait_timeout": "2s"}))
	setup := r.connect(t, "umbrella")
	mustExec(t, setup, "drop table if exists app_data.copyf; create table app_data.copyf (id int)")
	hc := hijackDSN(t, r.dsn("umbrella"))
	startCopy(t, hc, "copy app_data.copyf from stdin")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("not a number\n")})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "22P02" {
		t.Fatalf("errors %v, want [22P02]", codes)
	}
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{})
	if n := queryInt(t, setup, "select count(*) from app_data.copyf"); n != 0 {
		t.Fatalf("rows %d", n)
	}
	// The copying client goes on normally.
	wantAfter(t, hc)
	if n := queryInt(t, setup, "select 7"); n != 7 {
		t.Fatal(n)
	}
}

// After Suspect (a failover sign) the pool checks each backend with a
// simple Query before handing it out, which destroys the backend's unnamed
// statement: a client's Bind of its unnamed statement still works.
func TestUnnamedStatementSurvivesValidation(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	ctx := testCtx(t, 20*time.Second)
	a := r.connect(t, "globex").PgConn()
	if _, err := a.Prepare(ctx, "", "select 42", nil); err != nil {
		t.Fatal(err)
	}
	if res := a.ExecPrepared(ctx, "", nil, nil, nil).Read(); res.Err != nil {
		t.Fatal(res.Err)
	}
	r.pool.Suspect()
	if res := a.ExecPrepared(ctx, "", nil, nil, nil).Read(); res.Err != nil || string(res.Rows[0][0]) != "42" {
		t.Fatalf("after validation: %v %q", res.Err, res.Rows)
	}
}

// After a COPY failed on its data, a large CopyData the client still
// streams must go nowhere: never into the backend once it is back in the
// pool, where another client's messages would land inside it (and its
// tail would run as their query).
func TestStrayCopyStreamAfterAFailedCopy(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1, "pool_wait_timeout": "3s"}))
	setup := r.connect(t, "umbrella")
	mustExec(t, setup, "drop table if exists app_data.copys; create table app_data.copys (id int)")
	a := hijackDSN(t, r.dsn("umbrella"))
	startCopy(t, a, "copy app_data.copys from stdin")
	// A bad row, then (before its error comes back) 64 KiB of data ending
	// in what would be a Query message if a backend read it outside the
	// CopyData: the router streams it while the backend answers the error.
	tail := []byte{'Q', 0, 0, 0, 13, 's', 'e', 'l', 'e', 'c', 't', ' ', '2', 0}
	big := append(bytes.Repeat([]byte("1\n"), 32<<10), tail...)
	raw, _ := (&pgproto3.CopyData{Data: []byte("bad\n")}).Encode(nil)
	raw, _ = (&pgproto3.CopyData{Data: big}).Encode(raw)
	raw, _ = (&pgproto3.CopyDone{}).Encode(raw)
	half := len(raw) / 2
	started := make(chan struct{})
	sent := make(chan error, 1)
	go func() { // no t.Fatal off the test goroutine
		_, err := a.Conn.Write(raw[:half])
		close(started)
		if err == nil {
			time.Sleep(300 * time.Millisecond) // the stream waits for the rest
			_, err = a.Conn.Write(raw[half:])
		}
		sent <- err
	}()
	<-started
	for i := 0; i < 5; i++ {
		if n := queryInt(t, setup, "select 1"); n != 1 {
			t.Fatalf("another client's select 1 returned %d", n)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != 1 {
		t.Fatalf("errors %v", codes)
	}
	wantAfter(t, a)
	if n := queryInt(t, setup, "select 3"); n != 3 {
		t.Fatal(n)
	}
}

// The round trip that applies a new parameter set destroys the backend's
// unnamed statement; the next client with the same set must not find
// the unnamed statement the previous one left.
func TestUnnamedStatementAfterParamsRoundTrip(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	ctx := testCtx(t, 20*time.Second)
	a := r.connectMode(t, "acme", pgx.QueryExecModeExec, "options='-c work_mem=7MB'").PgConn()
	if _, err := a.Prepare(ctx, "", "select 'a-secret'", nil); err != nil {
		t.Fatal(err)
	}
	b := r.connectMode(t, "acme", pgx.QueryExecModeExec, "options='-c work_mem=7MB'").PgConn()
	res := b.ExecPrepared(ctx, "", nil, nil, nil).Read()
	if res.Err == nil {
		t.Fatalf("b ran a's unnamed statement: %q", res.Rows)
	}
	wantCode(t, res.Err, "26000")
}

// COPY data a client sends before CopyInResponse (Execute and Flush, then
// the data at once) reaches the COPY: only data after a COPY ended is
// dropped.
func TestCopyDataBeforeCopyInResponse(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 2}))
	setup := r.connect(t, "umbrella")
	mustExec(t, setup, "drop table if exists app_data.copy_early; create table app_data.copy_early (id int)")
	unlock := lockTable(t, tenants["umbrella"].Database, "app_data.copy_early")
	hc := hijackDSN(t, r.dsn("umbrella"))
	sendAll(t, hc, &pgproto3.Parse{Query: "copy app_data.copy_early from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	time.Sleep(200 * time.Millisecond) // the COPY waits for the lock
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")})
	time.Sleep(200 * time.Millisecond)
	sendAll(t, hc, &pgproto3.CopyDone{})
	time.Sleep(200 * time.Millisecond)
	unlock()
	sendAll(t, hc, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("COPY: errors %v", codes)
	}
	if n := queryInt(t, setup, "select count(*) from app_data.copy_early"); n != 1 {
		t.Fatalf("rows %d, want 1", n)
	}
}

// A COPY ended by CopyDone with the next COPY (Execute, Flush) in the same
// write: the session is mid-request after the first COPY's ReadyForQuery,
// and the second COPY's data goes to it.
func TestCopyAfterCopyPipelined(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1, "pool_wait_timeout": "2s"}))
	setup := r.connect(t, "umbrella")
	mustExec(t, setup, "drop table if exists app_data.copy_a, app_data.copy_b; create table app_data.copy_a (id int); create table app_data.copy_b (id int)")
	hc := hijackDSN(t, r.dsn("umbrella"))
	startCopy(t, hc, "copy app_data.copy_a from stdin")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{},
		&pgproto3.Parse{Query: "copy app_data.copy_b from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("COPY a: %v", codes)
	}
	receiveUntil[*pgproto3.CopyInResponse](t, hc)
	time.Sleep(100 * time.Millisecond)
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("2\n")})
	time.Sleep(100 * time.Millisecond)
	sendAll(t, hc, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("COPY b: %v", codes)
	}
	if n := queryInt(t, setup, "select (select count(*) from app_data.copy_a) * 10 + (select count(*) from app_data.copy_b)"); n != 11 {
		t.Fatalf("rows %d, want 11", n)
	}
}

// The same with everything sent before the first CopyInResponse (the next
// COPY waits for a lock meanwhile): its data still reaches it.
func TestCopyAfterCopyAllAtOnce(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1, "pool_wait_timeout": "2s"}))
	setup := r.connect(t, "umbrella")
	mustExec(t, setup, "drop table if exists app_data.copy_c, app_data.copy_d; create table app_data.copy_c (id int); create table app_data.copy_d (id int)")
	unlock := lockTable(t, tenants["umbrella"].Database, "app_data.copy_d")
	hc := hijackDSN(t, r.dsn("umbrella"))
	sendAll(t, hc, &pgproto3.Query{String: "copy app_data.copy_c from stdin"}, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{},
		&pgproto3.Parse{Query: "copy app_data.copy_d from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("COPY c: %v", codes)
	}
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("2\n")})
	time.Sleep(300 * time.Millisecond)
	unlock()
	receiveUntil[*pgproto3.CopyInResponse](t, hc)
	sendAll(t, hc, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("COPY d: %v", codes)
	}
	if n := queryInt(t, setup, "select (select count(*) from app_data.copy_c) * 10 + (select count(*) from app_data.copy_d)"); n != 11 {
		t.Fatalf("rows %d, want 11", n)
	}
}

// A client that goes quiet after its COPY failed on its data does not keep
// the backend: another client of the tenant gets it.
func TestQuietAfterAFailedCopy(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1, "pool_wait_timeout": "2s"}))
	setup := r.connect(t, "umbrella")
	mustExec(t, setup, "drop table if exists app_data.copy_q; create table app_data.copy_q (id int)")
	hc := hijackDSN(t, r.dsn("umbrella"))
	startCopy(t, hc, "copy app_data.copy_q from stdin")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("bad\n")})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 {
		t.Fatalf("errors %v", codes)
	}
	if n := queryInt(t, setup, "select 5"); n != 5 { // while hc is quiet
		t.Fatal(n)
	}
	sendAll(t, hc, &pgproto3.CopyDone{}, &pgproto3.Query{String: "select 'after'"})
	if rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 || len(rows) != 1 {
		t.Fatalf("after: rows %v errors %v", rows, codes)
	}
}

// oneRow runs q as a simple Query on hc and returns the first column of its
// one row, failing the test on an error or any other number of rows.
func oneRow(t *testing.T, hc *pgconn.HijackedConn, q string) string {
	t.Helper()
	rows, codes := simpleQuery(t, hc, q)
	if len(codes) > 0 || len(rows) != 1 {
		t.Fatalf("%s: rows %v errors %v", q, rows, codes)
	}
	return rows[0]
}

// simpleQuery sends sql as a simple Query on hc and reads the answer up to
// ReadyForQuery.
func simpleQuery(t *testing.T, hc *pgconn.HijackedConn, sql string) (rows, codes []string) {
	t.Helper()
	sendAll(t, hc, &pgproto3.Query{String: sql})
	return receiveUntil[*pgproto3.ReadyForQuery](t, hc)
}

// wantAfter checks that the session on hc still answers a query:
// "select 'after'" gives its one row and no error.
func wantAfter(t *testing.T, hc *pgconn.HijackedConn) {
	t.Helper()
	if rows, codes := simpleQuery(t, hc, "select 'after'"); len(codes) > 0 || len(rows) != 1 || rows[0] != "after" {
		t.Fatalf("select 'after': rows %v errors %v", rows, codes)
	}
}

// startCopy sends a COPY FROM STDIN as a simple Query and waits for the
// CopyInResponse.
func startCopy(t *testing.T, hc *pgconn.HijackedConn, sql string) {
	t.Helper()
	sendAll(t, hc, &pgproto3.Query{String: sql})
	receiveUntil[*pgproto3.CopyInResponse](t, hc)
}

// lockTable holds an ACCESS EXCLUSIVE lock on table (in database) from a
// superuser connection until the returned function is called.
func lockTable(t *testing.T, database, table string) (unlock func()) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	c, err := pgx.Connect(ctx, cluster.SuperDSN(database))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "lock table "+table+" in access exclusive mode"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// scratchTable creates table (with columns cols) through conn in the
// tenant's database and drops it when the test ends.
func scratchTable(t *testing.T, conn *pgx.Conn, tenant, table, cols string) {
	t.Helper()
	mustExec(t, conn, "drop table if exists "+table+"; create table "+table+" ("+cols+")")
	t.Cleanup(func() {
		_ = cluster.Exec(context.Background(), tenants[tenant].Database, "drop table if exists "+table)
	})
}

// A session pinned for session state that DISCARD ALL undoes goes back to
// transaction pooling once a DISCARD ALL it sends succeeds: its backend
// serves other clients again, with nothing of the session left on it. One
// pinned for what DISCARD ALL leaves (a FunctionCall's effects) keeps its
// backend, and so does one whose DISCARD ALL failed.
func TestDiscardAllUnpins(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1, "pool_wait_timeout": "500ms"}))
	a, b := hijackDSN(t, r.dsn("acme")), hijackDSN(t, r.dsn("acme"))
	wantPinned := func(what string, pinned bool) {
		t.Helper()
		_, codes := simpleQuery(t, b, "select 1")
		if got := len(codes) > 0; got != pinned {
			t.Fatalf("%s: another client's query got errors %v; want the backend held: %v", what, codes, pinned)
		}
	}
	for _, q := range []string{"set search_path = public", "create temp table held_tt (x int)", "select pg_advisory_lock(42)",
		"prepare p as select 1", "listen chan", "begin", "declare c cursor with hold for select 1", "commit"} {
		if _, codes := simpleQuery(t, a, q); len(codes) > 0 {
			t.Fatalf("%s: %v", q, codes)
		}
	}
	wantPinned("pinned", true)
	mustReady(t, a, q("begin"))
	if _, codes := simpleQuery(t, a, "discard all"); len(codes) != 1 || codes[0] != "25001" {
		t.Fatalf("DISCARD ALL in a block: errors %v, want 25001", codes)
	}
	mustReady(t, a, q("rollback"))
	wantPinned("after a DISCARD ALL that failed", true)
	mustReady(t, a, q("discard all"))
	wantPinned("after DISCARD ALL", false)
	for q, want := range map[string]string{
		"select count(*) from pg_class where relname = 'held_tt'":   "0",
		"select count(*) from pg_locks where locktype = 'advisory'": "0",
		"select count(*) from pg_prepared_statements":               "0",
		"select count(*) from pg_listening_channels()":              "0",
		"select count(*) from pg_cursors":                           "0",
		"select current_setting('search_path')":                     `"$user", public`,
	} {
		if got := oneRow(t, b, q); got != want {
			t.Errorf("another client of the backend: %s = %s, want %s", q, got, want)
		}
	}
	if n := oneRow(t, a, "select 1"); n != "1" {
		t.Fatal(n)
	}
	// What DISCARD ALL leaves on the backend keeps the session pinned: a
	// seeded random generator, a custom setting (defined, empty; the
	// backend keeps it after the client leaves too, see README), and a
	// set_config, whose names the lexer may not all know.
	for _, set := range []string{"set seed = 0.5", "select setseed(0.5)", "set myapp.x = 'secret'", "select set_config('work_mem', '7MB', false)"} {
		mustReady(t, a, q(set))
		wantPinned(set, true)
		mustReady(t, a, q("discard all"))
		wantPinned(set+", after DISCARD ALL", true)
		a.Conn.Close()
		a = hijackDSN(t, r.dsn("acme"))
	}
	// A FunctionCall pins for good.
	sendAll(t, a, &pgproto3.FunctionCall{Function: 1299})
	receiveUntil[*pgproto3.ReadyForQuery](t, a)
	mustReady(t, a, q("discard all"))
	wantPinned("pinned by a FunctionCall, after DISCARD ALL", true)
}
