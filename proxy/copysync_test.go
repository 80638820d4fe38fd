package proxy_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Syncs around a COPY FROM STDIN, which PostgreSQL ignores in copy-in mode
// (copysync.go). Every test runs with a pool of one, so that a backend given
// back too early, or never, shows: the next client of the tenant would get
// answers meant for another, or wait out pool_wait_timeout.

func copyRouter(t *testing.T, table string) (*router, func() int64) {
	t.Helper()
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1, "pool_wait_timeout": "3s"}))
	setup := r.connect(t, "umbrella")
	scratchTable(t, setup, "umbrella", table, "id int")
	return r, func() int64 { return queryInt(t, r.connect(t, "umbrella"), "select count(*) from "+table) }
}

// A Sync after the CopyDone is answered: the Query pipelined behind it gets
// its own answer, on this client, and the backend goes back after it.
func TestCopyExtendedPipelinedWithQuery(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_pipe")
	hc := hijackDSN(t, r.dsn("umbrella"))
	sendAll(t, hc,
		&pgproto3.Parse{Query: "copy app_data.cs_pipe from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{},
		&pgproto3.Query{String: "select 'second' from pg_sleep(0.3)"})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("COPY: errors %v", codes)
	}
	// Meanwhile another client must not get the backend, nor hc's answer.
	other := make(chan string, 1)
	go func() {
		c, err := connectCfg(t, connConfig(t, r.dsn("umbrella")))
		if err != nil {
			other <- err.Error()
			return
		}
		var s string
		if err := c.QueryRow(testCtx(t, 10*time.Second), "select 'mine'").Scan(&s); err != nil {
			s = err.Error()
		}
		other <- s
	}()
	rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc)
	if len(codes) > 0 || len(rows) != 1 || rows[0] != "second" {
		t.Fatalf("second request: rows %v errors %v", rows, codes)
	}
	if got := <-other; got != "mine" {
		t.Fatalf("the other client got %q", got)
	}
	if n := count(); n != 1 {
		t.Fatalf("rows %d, want 1", n)
	}
}

// A Sync written after the CopyInResponse, before any data, is ignored.
func TestCopyExtendedSyncAfterCopyInResponse(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_after")
	hc := hijackDSN(t, r.dsn("umbrella"))
	sendAll(t, hc, &pgproto3.Parse{Query: "copy app_data.cs_after from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	receiveUntil[*pgproto3.CopyInResponse](t, hc)
	sendAll(t, hc, &pgproto3.Sync{})
	time.Sleep(100 * time.Millisecond)
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("COPY: errors %v", codes)
	}
	wantAfter(t, hc)
	if n := count(); n != 1 {
		t.Fatalf("rows %d, want 1", n)
	}
}

// The portal was bound in an earlier request of the transaction: its
// Execute still starts the COPY, and the Sync behind it is ignored.
func TestCopyPortalBoundEarlier(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_portal")
	hc := hijackDSN(t, r.dsn("umbrella"))
	if _, codes := simpleQuery(t, hc, "begin"); len(codes) > 0 {
		t.Fatal(codes)
	}
	sendAll(t, hc, &pgproto3.Parse{Query: "copy app_data.cs_portal from stdin"}, &pgproto3.Bind{DestinationPortal: "p"}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatal(codes)
	}
	sendAll(t, hc, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
	receiveUntil[*pgproto3.CopyInResponse](t, hc)
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatal(codes)
	}
	if _, codes := simpleQuery(t, hc, "commit"); len(codes) > 0 {
		t.Fatal(codes)
	}
	if n := count(); n != 1 {
		t.Fatalf("rows %d, want 1", n)
	}
}

// Rows a client copied with an Execute and never followed with a Sync are
// not committed when it leaves (the implicit transaction is still open, as
// PostgreSQL would roll it back), and the backend is not reused with it.
func TestCopyExtendedWithoutSyncThenDisconnect(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_nosync")
	for _, end := range []pgproto3.FrontendMessage{&pgproto3.CopyDone{}, &pgproto3.CopyFail{Message: "no"}} {
		hc := hijackDSN(t, r.dsn("umbrella"))
		sendAll(t, hc, &pgproto3.Parse{Query: "copy app_data.cs_nosync from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		receiveUntil[*pgproto3.CopyInResponse](t, hc)
		sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, end)
		time.Sleep(200 * time.Millisecond) // the COPY is over; no Sync follows
		hc.Conn.Close()
		if n := count(); n != 0 {
			t.Fatalf("%T: %d rows committed by a client that never sent Sync", end, n)
		}
	}
}

// A Flush among the data of a COPY that then fails leaves the session
// between requests: the backend goes back while its client is quiet.
func TestCopyFailedWithFlushGivesBackTheBackend(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_flush")
	hc := hijackDSN(t, r.dsn("umbrella"))
	startCopy(t, hc, "copy app_data.cs_flush from stdin")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("bad\n")}, &pgproto3.Flush{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 {
		t.Fatalf("errors %v", codes)
	}
	if n := count(); n != 0 { // while hc is quiet
		t.Fatal(n)
	}
}

// A Sync inside a simple-protocol COPY's data is ignored too.
func TestCopySimpleWithSyncInside(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_simple")
	hc := hijackDSN(t, r.dsn("umbrella"))
	startCopy(t, hc, "copy app_data.cs_simple from stdin")
	sendAll(t, hc, &pgproto3.Sync{}, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.Flush{}, &pgproto3.CopyDone{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("COPY: errors %v", codes)
	}
	if n := count(); n != 1 {
		t.Fatalf("rows %d, want 1", n)
	}
	wantAfter(t, hc)
}

// libpq's extended COPY (Sync right behind the Execute) into a table whose
// statement trigger fails it before it reads anything: that Sync is then
// answered on its own, and nothing is lost or left to the next client.
func TestCopyExtendedFailedBeforeReading(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_trig")
	failingTrigger(t, r, "app_data.cs_trig", "cs_trig_fail", "raise exception 'no copies today' using errcode = 'P0001'")
	hc := hijackDSN(t, r.dsn("umbrella"))
	startLibpqCopy(t, hc, "app_data.cs_trig")
	_, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc)
	if len(codes) != 1 || codes[0] != "P0001" {
		t.Fatalf("errors %v, want [P0001]", codes)
	}
	// What libpq sends next, not knowing: its data, CopyDone and a Sync,
	// which the backend, out of the COPY, answers too.
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("after: errors %v", codes)
	}
	wantAfter(t, hc)
	if n := count(); n != 0 {
		t.Fatalf("rows %d, want 0", n)
	}
}

// Syncs between CopyData of a COPY that fails on its data: the router
// cannot tell which the backend read before failing. The session keeps its
// backend and gets every answer the backend sends, the same messages as
// without the router, and the backend is closed, not reused, when it
// leaves.
func TestCopyUnsureSessionKeepsAndClosesItsBackend(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_unsure")
	var pid string
	sameAsDirect(t, r, func(hc *pgconn.HijackedConn) {
		rows, _ := simpleQuery(t, hc, "select pg_backend_pid()")
		pid = rows[0]
		startCopy(t, hc, "copy app_data.cs_unsure from stdin")
		sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.Sync{}, &pgproto3.CopyData{Data: []byte("bad\n")}, &pgproto3.Sync{})
	}, true, nil)
	if n := r.counter("umbrella", "pin", "copy_sync"); n != 1 {
		t.Fatalf("copy_sync pins %d", n)
	}
	if got := queryString(t, r.connect(t, "umbrella"), "select pg_backend_pid()::text"); got == pid {
		t.Fatalf("the backend of the unsure session (pid %s) was reused", pid)
	}
	if n := count(); n != 0 {
		t.Fatalf("rows %d, want 0", n)
	}
}

// libpq's extended COPY, a Sync after bad data: the backend answers it
// (whether it had read it before failing the router cannot tell, so the
// session keeps its backend).
func TestCopyExtendedSyncAfterBadData(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_baddata")
	sameAsDirect(t, r, func(hc *pgconn.HijackedConn) {
		startLibpqCopy(t, hc, "app_data.cs_baddata")
		sendAll(t, hc, &pgproto3.CopyData{Data: []byte("bad\n")}, &pgproto3.Sync{})
		time.Sleep(4 * time.Second) // idle, between transactions (max_statement_timeout is 1s)
	}, true, cfgMap{"max_statement_timeout": "1s"})
	if n := count(); n != 0 {
		t.Fatalf("rows %d, want 0", n)
	}
}

// A CopyData too large for the router's buffer (streamed through), then a
// Sync and CopyDone: the same accounting as for small data (a Sync after
// data, in a COPY that fails).
func TestCopyExtendedBigDataThenSync(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_big")
	big := append([]byte("bad\n"), bytes.Repeat([]byte("1\n"), 10000)...)
	sameAsDirect(t, r, func(hc *pgconn.HijackedConn) {
		startLibpqCopy(t, hc, "app_data.cs_big")
		sendAll(t, hc, &pgproto3.CopyData{Data: big}, &pgproto3.Sync{}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	}, true, nil)
	if n := count(); n != 0 {
		t.Fatalf("rows %d, want 0", n)
	}
}

// libpq's extended COPY cancelled (statement_timeout) during a slow
// statement trigger, before the backend read anything: both Syncs are
// answered. A cancel may come at any time, so the session keeps its
// backend.
func TestCopyExtendedCancelledBeforeReading(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_slow")
	failingTrigger(t, r, "app_data.cs_slow", "cs_slow_trig", "perform pg_sleep(3)")
	sameAsDirect(t, r, func(hc *pgconn.HijackedConn) {
		startLibpqCopy(t, hc, "app_data.cs_slow")
		sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
		time.Sleep(1500 * time.Millisecond)
	}, true, nil, "options='-c statement_timeout=500'")
	if n := count(); n != 0 {
		t.Fatalf("rows %d, want 0", n)
	}
}

// A COPY run by the 301st Execute of its segment is found (a record counts
// up to 2^24-1 Executes, past which the session would keep its backend
// rather than guess).
func TestCopyAfterManyExecutes(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_many")
	sameAsDirect(t, r, func(hc *pgconn.HijackedConn) {
		msgs := []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "select 1"}}
		for range 300 {
			msgs = append(msgs, &pgproto3.Bind{}, &pgproto3.Execute{})
		}
		msgs = append(msgs, &pgproto3.Parse{Query: "copy app_data.cs_many from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
		sendAll(t, hc, msgs...)
		receiveUntil[*pgproto3.CopyInResponse](t, hc)
		sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	}, false, nil)
	if n := count(); n != 2 { // once directly, once through the router
		t.Fatalf("rows %d, want 2", n)
	}
}

// startLibpqCopy starts a COPY FROM STDIN into table the way libpq's
// PQexecParams does (Parse, Bind, Execute and a Sync behind them) and waits
// for the CopyInResponse.
func startLibpqCopy(t *testing.T, hc *pgconn.HijackedConn, table string) {
	t.Helper()
	sendAll(t, hc, &pgproto3.Parse{Query: "copy " + table + " from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	receiveUntil[*pgproto3.CopyInResponse](t, hc)
}

// sameAsDirect runs script on a raw connection of umbrella's, directly to
// PostgreSQL and then through r (with the given tenant overrides applied
// to a router of its own when not nil, and extra connection settings),
// sends "select 'after'" and checks that the client sees the same answers
// both ways, up to that query's. The backend must then serve the tenant's
// next client (a pool of one) while the first stays connected, unless it
// keeps its backend (keeps), and once it has left in any case.
func sameAsDirect(t *testing.T, r *router, script func(hc *pgconn.HijackedConn), keeps bool, overrides cfgMap, extra ...string) {
	t.Helper()
	if overrides != nil {
		overrides["pool_size"], overrides["pool_wait_timeout"] = 1, "3s"
		r = startRouter(t, tenantOverride("umbrella", overrides))
	}
	ti := tenants["umbrella"]
	next := func() {
		t.Helper()
		if got := queryString(t, r.connect(t, "umbrella"), "select 'next'"); got != "next" {
			t.Fatalf("the tenant's next client got %q", got)
		}
	}
	run := func(dsn string, routed bool) string {
		hc := hijackDSN(t, dsn)
		defer hc.Conn.Close()
		if routed && !keeps {
			defer next()
		}
		script(hc)
		sendAll(t, hc, &pgproto3.Query{String: "select 'after'"})
		var seen []byte
		_ = hc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			m, err := hc.Frontend.Receive()
			if err != nil {
				return string(seen) + " then " + err.Error()
			}
			switch m := m.(type) {
			case *pgproto3.ErrorResponse:
				seen = append(seen, 'E')
				if m.Severity == "FATAL" {
					return string(seen) + " FATAL " + m.Code
				}
			case *pgproto3.ReadyForQuery:
				seen = append(seen, 'Z')
			case *pgproto3.DataRow:
				seen = append(seen, 'D')
			}
			if len(seen) >= 2 && string(seen[len(seen)-2:]) == "DZ" {
				return string(seen)
			}
		}
	}
	direct := run(strings.Join(append([]string{cluster.DSN(ti.User, ti.Password, ti.Database)}, extra...), " "), false)
	routed := run(r.dsn("umbrella", extra...), true)
	if routed != direct {
		t.Fatalf("through the router the client saw %q, directly %q", routed, direct)
	}
	next()
}

// nextClient runs sql on a fresh connection of umbrella's in the
// background and sends the first column it got (or the error).
func nextClient(t *testing.T, r *router, sql string) <-chan string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		c, err := connectCfg(t, connConfig(t, r.dsn("umbrella")))
		if err != nil {
			got <- err.Error()
			return
		}
		var s string
		if err := c.QueryRow(testCtx(t, 10*time.Second), sql).Scan(&s); err != nil {
			s = err.Error()
		}
		got <- s
	}()
	return got
}

// tryReceiveReady reads from hc up to a ReadyForQuery like receiveUntil,
// but reports a failed read (a missing answer) instead of failing the test.
func tryReceiveReady(hc *pgconn.HijackedConn, d time.Duration) (rows, codes []string, err error) {
	_ = hc.Conn.SetReadDeadline(time.Now().Add(d))
	for {
		m, err := hc.Frontend.Receive()
		if err != nil {
			return rows, codes, err
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			codes = append(codes, m.Code)
		case *pgproto3.ReadyForQuery:
			return rows, codes, nil
		}
	}
}

// failingTrigger gives table a BEFORE STATEMENT trigger, function name,
// running body.
func failingTrigger(t *testing.T, r *router, table, name, body string) {
	t.Helper()
	setup := r.connect(t, "umbrella")
	defer closeConn(setup)
	mustExec(t, setup, "create or replace function app_data."+name+"() returns trigger language plpgsql as $$ begin "+body+"; return null; end $$")
	mustExec(t, setup, "create trigger "+name+" before insert on "+table+" for each statement execute function app_data."+name+"()")
}

// A statement trigger fails the COPY with a data-class error (22012)
// before the backend read any copy message: the Sync written behind the
// Execute is answered, and so is the Query pipelined after the data. The
// SQLSTATE does not show whether the backend had read anything; taking
// class 22 for proof that it had, the router once gave the backend back
// with the Query's answer owed, and the tenant's next client got it.
func TestCopyTriggerDataErrorBeforeReading(t *testing.T) {
	r, _ := copyRouter(t, "app_data.cs_trig22")
	failingTrigger(t, r, "app_data.cs_trig22", "cs_trig22_fail", "perform pg_sleep(0.3); perform 1/0")
	hc := hijackDSN(t, r.dsn("umbrella"))
	startLibpqCopy(t, hc, "app_data.cs_trig22")
	// Written while the trigger runs, before the backend reads anything.
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{},
		&pgproto3.Query{String: "select 'mine' from pg_sleep(1)"})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("COPY: errors %v, want [22012]", codes)
	}
	next := nextClient(t, r, "select 'theirs'")
	rows, codes, err := tryReceiveReady(hc, 3*time.Second)
	if len(codes) > 0 || len(rows) != 1 || rows[0] != "mine" {
		t.Fatalf("the COPY's client got rows %v errors %v (%v)", rows, codes, err)
	}
	// The router cannot tell how many answers were due: the session keeps
	// its backend until it leaves (the next client waits for it).
	if n := r.counter("umbrella", "pin", "copy_sync"); n != 1 {
		t.Errorf("copy_sync pins %d, want 1", n)
	}
	wantAfter(t, hc)
	hc.Conn.Close()
	if got := <-next; got != "theirs" {
		t.Fatalf("the tenant's next client got %q", got)
	}
}

// The same trigger with exactly what libpq sends for PQexecParams of a
// COPY, then PQputCopyData and PQputCopyEnd: PostgreSQL answers both Syncs
// (behind the Execute and after CopyDone).
func TestCopyTriggerDataErrorBeforeReadingLibpq(t *testing.T) {
	r, count := copyRouter(t, "app_data.cs_trig22l")
	failingTrigger(t, r, "app_data.cs_trig22l", "cs_trig22l_fail", "perform pg_sleep(0.3); perform 1/0")
	sameAsDirect(t, r, func(hc *pgconn.HijackedConn) {
		startLibpqCopy(t, hc, "app_data.cs_trig22l")
		sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
		if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "22012" {
			t.Fatalf("COPY: errors %v, want [22012]", codes)
		}
		if rows, codes, err := tryReceiveReady(hc, 3*time.Second); err != nil || len(rows)+len(codes) > 0 {
			t.Fatalf("second Sync: rows %v errors %v (%v)", rows, codes, err)
		}
	}, true, nil)
	if n := count(); n != 0 {
		t.Fatalf("rows %d, want 0", n)
	}
}

// A cancel lands in a slow statement trigger, before the backend read any
// copy message, while the client has written CopyFail and a Sync (libpq's
// PQputCopyEnd with an error message): the 57014 is the cancel's, not the
// CopyFail's, and both Syncs are answered.
func TestCopyCancelledInTriggerAfterCopyFail(t *testing.T) {
	r, _ := copyRouter(t, "app_data.cs_trigcancel")
	failingTrigger(t, r, "app_data.cs_trigcancel", "cs_trigcancel_slow", "perform pg_sleep(3)")
	hc := hijackDSN(t, r.dsn("umbrella"))
	startLibpqCopy(t, hc, "app_data.cs_trigcancel")
	sendAll(t, hc, &pgproto3.CopyFail{Message: "changed my mind"}, &pgproto3.Sync{})
	time.Sleep(200 * time.Millisecond)
	sendCancel(t, r, rawKey{pid: hc.PID, secret: hc.SecretKey})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "57014" {
		t.Fatalf("COPY: errors %v, want [57014]", codes)
	}
	if rows, codes, err := tryReceiveReady(hc, 3*time.Second); err != nil || len(rows)+len(codes) > 0 {
		t.Errorf("second Sync: rows %v errors %v (%v)", rows, codes, err)
	}
	wantAfter(t, hc)
	hc.Conn.Close()
	if got := <-nextClient(t, r, "select 'theirs'"); got != "theirs" {
		t.Errorf("the tenant's next client got %q", got)
	}
}

// A COPY run by an Execute with libpq's Sync behind it fails on its data,
// with a named Parse pipelined after the data, which the backend skips.
// The router must not keep the skipped statement in its books of the
// backend: another client whose statement has the same text would be
// bound to a statement that does not exist.
func TestCopySkippedParseAfterIgnoredSync(t *testing.T) {
	r, _ := copyRouter(t, "app_data.cs_skip")
	c2 := r.connect(t, "umbrella", "default_query_exec_mode=cache_statement")
	if got := queryString(t, c2, "select 'cs-x'"); got != "cs-x" {
		t.Fatal(got)
	}
	// Replace the tenant's only backend: c2's statement is now on none.
	pid := queryInt(t, c2, "select pg_backend_pid()")
	superInt(t, "postgres", "select pg_terminate_backend($1)::int", pid)
	time.Sleep(300 * time.Millisecond) // the pool peeks at it and dials anew

	hc := hijackDSN(t, r.dsn("umbrella"))
	startLibpqCopy(t, hc, "app_data.cs_skip")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("bad\n")}, &pgproto3.CopyDone{},
		&pgproto3.Parse{Name: "sx", Query: "select 'cs-x'"}, &pgproto3.Bind{PreparedStatement: "sx"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(rows) != 0 || len(codes) != 1 || codes[0] != "22P02" {
		t.Fatalf("COPY: rows %v errors %v, want [22P02]", rows, codes)
	}
	hc.Conn.Close()

	var got string
	if err := c2.QueryRow(testCtx(t, 10*time.Second), "select 'cs-x'").Scan(&got); err != nil || got != "cs-x" {
		t.Fatalf("the other client's prepared statement: %q, %v", got, err)
	}
}
