package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgbridge/pgbridge/proxy"
)

// adminDSN connects to the console as the admin login.
func (r *router) adminDSN(extra ...string) string {
	s := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=pgbridge sslmode=disable connect_timeout=10",
		r.port, adminUser, adminPassword)
	for _, e := range extra {
		s += " " + e
	}
	return s
}

func (r *router) admin(t *testing.T) *pgx.Conn {
	t.Helper()
	cc := connConfig(t, r.adminDSN())
	cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := connectCfg(t, cc)
	if err != nil {
		t.Fatalf("admin console: %v", err)
	}
	return conn
}

// adminRows runs a console command and returns its rows by column name.
func adminRows(t *testing.T, conn *pgx.Conn, cmd string) []map[string]string {
	t.Helper()
	rows, err := conn.Query(testCtx(t, 10*time.Second), cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		vals := rows.RawValues()
		m := map[string]string{}
		for i, fd := range rows.FieldDescriptions() {
			m[fd.Name] = string(vals[i])
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return out
}

func rowFor(rows []map[string]string, col, val string) map[string]string {
	for _, r := range rows {
		if r[col] == val {
			return r
		}
	}
	return nil
}

func TestAdminConsoleWithPsql(t *testing.T) {
	r := startRouter(t)
	acme := r.connect(t, "acme", "application_name=psql-probe")
	mustExec(t, acme, "select 1")
	pid := queryInt(t, acme, "select pg_backend_pid()") // now idle in the pool

	for _, item := range []string{"TENANTS", "POOLS", "CLIENTS", "SERVERS", "STATS", "CONFIG", "HELP"} {
		cmd := command(testCtx(t, 20*time.Second), adminPassword, "psql", "-X", "-A", "-t", "-F", "|", r.adminDSN(), "-c", "SHOW "+item+";")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql SHOW %s: %v\n%s", item, err, out)
		}
		text := string(out)
		switch item {
		case "TENANTS", "POOLS", "STATS":
			for _, name := range tenantNames {
				if !strings.Contains(text, name+"|") {
					t.Errorf("SHOW %s lacks tenant %s:\n%s", item, name, text)
				}
			}
		case "CLIENTS":
			if !strings.Contains(text, "|acme|acme_app|") || !strings.Contains(text, "psql-probe") {
				t.Errorf("SHOW CLIENTS lacks the acme client:\n%s", text)
			}
		case "SERVERS":
			// Transaction mode: the backend went back to the pool idle.
			if !strings.Contains(text, fmt.Sprintf("|idle|%d||", pid)) || !strings.HasPrefix(text, "acme|") {
				t.Errorf("SHOW SERVERS lacks acme's idle backend %d:\n%s", pid, text)
			}
		case "CONFIG":
			if !strings.Contains(text, "tenants.acme.pool_size|5") || strings.Contains(text, tenants["acme"].Password) {
				t.Errorf("SHOW CONFIG wrong or shows a secret:\n%s", text)
			}
		case "HELP":
			if !strings.Contains(text, "KILL_CLIENT") {
				t.Errorf("SHOW HELP:\n%s", text)
			}
		}
	}
	// An unknown command is an error, the console stays usable.
	cmd := command(testCtx(t, 20*time.Second), adminPassword, "psql", "-X", "-v", "ON_ERROR_STOP=0", r.adminDSN(), "-c", "DROP TABLE x", "-c", "SHOW HELP")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "unknown admin command") || !strings.Contains(string(out), "KILL_CLIENT") {
		t.Errorf("psql unknown command:\n%s", out)
	}
}

func TestAdminConsoleRefusesEveryoneElse(t *testing.T) {
	r := startRouter(t)
	// A tenant login asking for the console: the same 28P01 as a bad password.
	ti := tenants["acme"]
	_, err := connectCfg(t, connConfig(t, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=pgbridge sslmode=disable", r.port, ti.Login, ti.LoginPassword)))
	wantCode(t, err, "28P01")
	// The admin login with a wrong password, and asking for a tenant database.
	_, err = connectCfg(t, connConfig(t, r.adminDSN("password=wrong")))
	wantCode(t, err, "28P01")
	_, err = connectCfg(t, connConfig(t, r.adminDSN("dbname="+ti.Database)))
	wantCode(t, err, "28P01")
	// The extended protocol is refused with a clear error.
	conn := r.admin(t)
	res := conn.PgConn().ExecParams(testCtx(t, 5*time.Second), "SHOW TENANTS", nil, nil, nil, nil).Read()
	wantCode(t, res.Err, "0A000")
	if rows := adminRows(t, conn, "SHOW TENANTS"); len(rows) != len(tenantNames) { // still usable
		t.Errorf("SHOW TENANTS after the refusal: %d rows", len(rows))
	}
}

func TestAdminPauseResume(t *testing.T) {
	r := startRouter(t)
	adm := r.admin(t)
	acme := r.connect(t, "acme")
	globex := r.connect(t, "globex")

	mustExec(t, adm, "PAUSE acme")
	if row := rowFor(adminRows(t, adm, "SHOW TENANTS"), "tenant", "acme"); row["paused"] != "true" {
		t.Fatalf("acme not shown paused: %v", row)
	}
	done := make(chan error, 1)
	go func() {
		_, err := acme.Exec(context.Background(), "select 1")
		done <- err
	}()
	// acme's query waits while globex is served.
	for i := 0; i < 20; i++ {
		if n := queryInt(t, globex, "select $1::int", i); n != int64(i) {
			t.Fatalf("globex: %d", n)
		}
	}
	eventually(t, 5*time.Second, "acme's client to be shown waiting", func() bool {
		return rowFor(adminRows(t, adm, "SHOW POOLS"), "tenant", "acme")["cl_waiting"] == "1"
	})
	select {
	case err := <-done:
		t.Fatalf("acme query finished while paused: %v", err)
	default:
	}
	mustExec(t, adm, "RESUME acme")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("acme query after RESUME: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("acme query still waiting 10s after RESUME")
	}
	// PAUSE of an unknown tenant is an error; PAUSE/RESUME without a name
	// covers all tenants.
	_, err := adm.Exec(testCtx(t, 5*time.Second), "PAUSE nosuch")
	wantCode(t, err, "42704")
	mustExec(t, adm, "PAUSE")
	for _, row := range adminRows(t, adm, "SHOW TENANTS") {
		if row["paused"] != "true" {
			t.Errorf("after PAUSE: %v", row)
		}
	}
	mustExec(t, adm, "RESUME")
	if n := queryInt(t, acme, "select 3"); n != 3 {
		t.Errorf("after RESUME: %d", n)
	}
}

func TestAdminKillClientAndTenant(t *testing.T) {
	r := startRouter(t)
	adm := r.admin(t)
	// Clients read, not written to, once killed: a write to the closed
	// connection could fail before the FATAL waiting for it is read.
	victim := hijackDSN(t, r.dsn("acme", "application_name=victim"))
	bystander := hijackDSN(t, r.dsn("acme"))
	other := r.connect(t, "globex")

	row := rowFor(adminRows(t, adm, "SHOW CLIENTS"), "application_name", "victim")
	if row == nil {
		t.Fatal("victim not in SHOW CLIENTS")
	}
	mustExec(t, adm, "KILL_CLIENT "+row["id"])
	wantFatalClose(t, victim, "57P01")
	if rows, codes := simpleQuery(t, bystander, "select 1"); len(codes) > 0 || len(rows) != 1 {
		t.Fatalf("bystander: rows %v errors %v", rows, codes)
	}
	_, err := adm.Exec(testCtx(t, 5*time.Second), "KILL_CLIENT 999999")
	wantCode(t, err, "42704")

	mustExec(t, adm, "KILL acme")
	wantFatalClose(t, bystander, "57P01")
	if n := queryInt(t, other, "select 2"); n != 2 {
		t.Fatal("globex after KILL acme")
	}
	if n := r.srv.TenantStats("acme").SessionCloses.Get("killed"); n != 2 {
		t.Errorf("killed closes = %d, want 2", n)
	}
	r.eventuallyLogsIn(t, "acme") // KILL ends sessions, it does not block the tenant
}

func TestAdminReload(t *testing.T) {
	r := startRouter(t)
	_, err := r.admin(t).Exec(testCtx(t, 5*time.Second), "RELOAD")
	wantCode(t, err, "55000")

	var calls atomic.Int32
	fail := atomic.Bool{}
	r2 := startRouterWith(t, []proxy.Option{proxy.WithReloader(func() error {
		calls.Add(1)
		if fail.Load() {
			return errors.New("pool_size: bad value")
		}
		return nil
	})})
	adm := r2.admin(t)
	mustExec(t, adm, "RELOAD")
	fail.Store(true)
	_, err = adm.Exec(testCtx(t, 5*time.Second), "RELOAD")
	if pe := wantCode(t, err, "F0000"); !strings.Contains(pe.Message, "pool_size: bad value") {
		t.Errorf("message %q", pe.Message)
	}
	if calls.Load() != 2 {
		t.Errorf("reloader called %d times", calls.Load())
	}
}

// A client that stops reading in the middle of a large result leaves the
// router blocked writing to it. KILL_CLIENT and shutdown must still end it
// at once rather than wait for that write (they used to wait forever).
func TestKillClientThatStopsReading(t *testing.T) {
	r := startRouter(t, cfgMap{"listen": cfgMap{"shutdown_timeout": "300ms"}})
	adm := r.admin(t)
	ti := tenants["acme"]
	stuck := func(name string) net.Conn {
		hc := hijackSlowReader(t, r.dsn("acme", "application_name="+name))
		hc.Frontend.Send(&pgproto3.Query{String: "select repeat('x', 100000) from generate_series(1, 10000000)"})
		if err := hc.Frontend.Flush(); err != nil {
			t.Fatal(err)
		}
		return hc.Conn // never read
	}
	blocked := func(n int64) {
		t.Helper()
		eventually(t, 20*time.Second, "backends to block writing to the router", func() bool {
			return superInt(t, ti.Database, "select count(*) from pg_stat_activity where usename = $1 and wait_event = 'ClientWrite'", ti.User) == n
		})
	}

	victim := stuck("victim")
	blocked(1)
	row := rowFor(adminRows(t, adm, "SHOW CLIENTS"), "application_name", "victim")
	if row == nil {
		t.Fatal("victim not in SHOW CLIENTS")
	}
	if _, err := adm.Exec(testCtx(t, 5*time.Second), "KILL_CLIENT "+row["id"]); err != nil {
		t.Fatalf("KILL_CLIENT of a client that stopped reading: %v", err)
	}
	if err := drainUntilClosed(victim, 10*time.Second); err != nil {
		t.Fatalf("killed session still open: %v", err)
	}
	blocked(0) // its backend was dropped, not left writing

	other := stuck("other")
	blocked(1)
	start := time.Now()
	if err := r.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	t.Logf("shutdown with a stuck client took %s", time.Since(start))
	if err := drainUntilClosed(other, 10*time.Second); err != nil {
		t.Fatalf("session still open after shutdown: %v", err)
	}
}

// drainUntilClosed reads and throws away what nc sends until it is closed.
func drainUntilClosed(nc net.Conn, d time.Duration) error {
	_ = nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, nc)
	if isTimeoutErr(err) {
		return err
	}
	return nil
}

// A Query message with no text at all (not even its NUL) is a protocol
// violation, answered as one: on a tenant session with query logging on,
// and on the admin console (both used to panic on it).
func TestQueryMessageWithoutText(t *testing.T) {
	r := startRouter(t, cfgMap{"log": cfgMap{"queries": true}})
	for _, tc := range []struct{ name, dsn string }{
		{"tenant", r.dsn("acme")},
		{"admin", r.adminDSN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sendWantProtocolFatal(t, hijackDSN(t, tc.dsn), []byte{'Q', 0, 0, 0, 4})
		})
	}
	conn := r.connect(t, "acme")
	if n := queryInt(t, conn, "select 1"); n != 1 {
		t.Fatal(n)
	}
}

// KILL_CLIENT of a session whose statement is running wakes its client
// loop with a read deadline on the backend: that is the kill, not a lost
// backend (which would also make the pool re-check every backend).
func TestKillDuringStatementIsNotABackendLoss(t *testing.T) {
	r := startRouter(t)
	adm := r.admin(t)
	victim := r.connect(t, "acme", "application_name=victim")
	done := runAsync(victim, "select pg_sleep(5)")
	waitActive(t, tenants["acme"].User, "select pg_sleep(5)")
	row := rowFor(adminRows(t, adm, "SHOW CLIENTS"), "application_name", "victim")
	if row == nil {
		t.Fatal("victim not in SHOW CLIENTS")
	}
	mustExec(t, adm, "KILL_CLIENT "+row["id"])
	wantCode(t, <-done, "57P01")
	st := r.srv.TenantStats("acme")
	if k, l := st.SessionCloses.Get("killed"), st.SessionCloses.Get("backend_lost"); k != 1 || l != 0 {
		t.Errorf("closes: killed %d, backend_lost %d; want 1 and 0", k, l)
	}
}
