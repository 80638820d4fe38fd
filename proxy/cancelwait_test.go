package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A client cancel reaches a request wherever it is: waiting for a backend
// (the pool, a PAUSE) the request ends unrun with 57014; while the router's
// own statement that gives a backend the client's parameters runs ahead of
// the client's, the cancel waits for it and then cancels the client's.

func TestCancelWhileWaitingForBackend(t *testing.T) {
	r := startRouter(t, tenantOverride("initech", cfgMap{"pool_size": 1, "pool_wait_timeout": "20s"}))
	a := r.connect(t, "initech")
	b := r.connect(t, "initech")
	mustExec(t, a, "create table if not exists cancel_wait(x int)")
	mustExec(t, a, "truncate cancel_wait")
	mustExec(t, a, "begin") // a holds the only backend
	keyB := rawKey{pid: b.PgConn().PID(), secret: b.PgConn().SecretKey()}
	bDone := runAsync(b, "insert into cancel_wait values (1)")
	adm := r.admin(t)
	eventually(t, 5*time.Second, "b waiting", func() bool {
		return rowFor(adminRows(t, adm, "SHOW POOLS"), "tenant", "initech")["cl_waiting"] == "1"
	})
	sendCancel(t, r, keyB)
	select {
	case err := <-bDone:
		if pe := wantCode(t, err, "57014"); !strings.Contains(pe.Message, "did not run") {
			t.Errorf("message %q", pe.Message)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the cancel did not end the wait")
	}
	mustExec(t, a, "commit")
	if n := queryInt(t, a, "select count(*) from cancel_wait"); n != 0 {
		t.Errorf("the cancelled insert ran (%d rows)", n)
	}
	if n := queryInt(t, b, "select 7"); n != 7 { // the session goes on
		t.Fatal(n)
	}
}

func TestCancelWhilePaused(t *testing.T) {
	r := startRouter(t)
	b := r.connect(t, "umbrella")
	adm := r.admin(t)
	mustExec(t, adm, "PAUSE umbrella")
	keyB := rawKey{pid: b.PgConn().PID(), secret: b.PgConn().SecretKey()}
	bDone := runAsync(b, "select 1")
	eventually(t, 5*time.Second, "b waiting", func() bool {
		return rowFor(adminRows(t, adm, "SHOW POOLS"), "tenant", "umbrella")["cl_waiting"] == "1"
	})
	sendCancel(t, r, keyB)
	select {
	case err := <-bDone:
		wantCode(t, err, "57014")
	case <-time.After(5 * time.Second):
		mustExec(t, adm, "RESUME umbrella")
		t.Fatalf("a cancel of a statement waiting on PAUSE did nothing; after RESUME: %v", <-bDone)
	}
	mustExec(t, adm, "RESUME umbrella")
	if n := queryInt(t, b, "select 7"); n != 7 {
		t.Fatal(n)
	}
}

// holdTablespaces makes the router's parameter statement for a client with
// default_tablespace wait (it reads pg_tablespace) until release. (New
// connections wait too: waitForLock uses the one holding the lock.)
func holdTablespaces(t *testing.T, database string) (super *pgx.Conn, release func()) {
	t.Helper()
	super, err := pgx.Connect(testCtx(t, 10*time.Second), cluster.SuperDSN(database))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, super, "begin")
	mustExec(t, super, "lock table pg_catalog.pg_tablespace in access exclusive mode")
	done := false
	release = func() {
		if !done {
			done = true
			mustExec(t, super, "commit")
			super.Close(context.Background())
		}
	}
	t.Cleanup(release)
	return super, release
}

func waitForLock(t *testing.T, super *pgx.Conn, user string) {
	t.Helper()
	eventually(t, 10*time.Second, "the router's statement to wait on the lock", func() bool {
		return queryInt(t, super, "select count(*) from pg_stat_activity where usename = $1 and wait_event_type = 'Lock'", user) > 0
	})
}

// The client's cancel lands while the router's parameter statement runs
// ahead of its INSERT on a backend another client (bob) used last: the
// INSERT is cancelled, and nothing runs with bob's app.who.
func TestCancelDuringTheRoutersParameterStatement(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1}))
	ti := tenants["umbrella"]
	a := r.connect(t, "umbrella", "options='-c app.who=alice -c default_tablespace=pg_default'")
	b := r.connect(t, "umbrella", "options='-c app.who=bob'")
	mustExec(t, a, "create table if not exists cancel_who(who text)")
	mustExec(t, a, "truncate cancel_who")
	if got := queryString(t, b, "select current_setting('app.who')"); got != "bob" {
		t.Fatal(got)
	}
	super, release := holdTablespaces(t, ti.Database)
	key := rawKey{pid: a.PgConn().PID(), secret: a.PgConn().SecretKey()}
	aDone := runAsync(a, "insert into cancel_who select current_setting('app.who')")
	waitForLock(t, super, ti.User)
	sendCancel(t, r, key)
	time.Sleep(300 * time.Millisecond)
	release()
	err := <-aDone
	who := superString(t, ti.Database, "select coalesce(string_agg(who, ','), '<none>') from cancel_who")
	if who != "<none>" {
		t.Errorf("alice's cancelled insert ran (err %v), with app.who=%s", err, who)
	}
	wantCode(t, err, "57014")
}

// Without a cancel: the router's parameter statement fails under the
// previous client's statement_timeout; alice's statement must not run
// with bob's app.who.
func TestFailedParameterStatementRunsNothingWithAnotherClientsSettings(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1}))
	ti := tenants["umbrella"]
	a := r.connect(t, "umbrella", "options='-c app.who=alice -c default_tablespace=pg_default -c statement_timeout=0'")
	b := r.connect(t, "umbrella", "options='-c app.who=bob -c statement_timeout=200'")
	mustExec(t, a, "create table if not exists cancel_who2(who text)")
	mustExec(t, a, "truncate cancel_who2")
	mustExec(t, b, "select 1")
	_, release := holdTablespaces(t, ti.Database)
	aDone := runAsync(a, "insert into cancel_who2 select current_setting('app.who')")
	time.Sleep(600 * time.Millisecond)
	release()
	err := <-aDone
	if who := superString(t, ti.Database, "select coalesce(string_agg(who, ','), '<none>') from cancel_who2"); who == "bob" {
		t.Errorf("alice's statement ran with bob's app.who (err %v)", err)
	}
}

// superString runs a single-value text query as the cluster superuser.
func superString(t *testing.T, database, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(testCtx(t, 10*time.Second), cluster.SuperDSN(database))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	return queryString(t, conn, sql)
}
