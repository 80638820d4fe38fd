package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgbridge/pgbridge/proxy"
)

// The client loop and a pump both write to the client: a pump's answer
// to the request before must reach the client before anything of the next
// request (its answer, a refusal, a FATAL), and a session ended at a
// boundary must neither lose the answer it owes nor run a request after.
// Test hooks (export_test.go) widen the windows between counting an
// answer and writing it.

// describe renders backend messages for order checks.
func describe(m pgproto3.BackendMessage) string {
	switch m := m.(type) {
	case *pgproto3.DataRow:
		return fmt.Sprintf("D(%s)", m.Values[0])
	case *pgproto3.ErrorResponse:
		return fmt.Sprintf("E(%s %s)", m.Severity, m.Code)
	case *pgproto3.ReadyForQuery:
		return "Z"
	case *pgproto3.CommandComplete:
		return "C(" + string(m.CommandTag) + ")"
	}
	return fmt.Sprintf("%T", m)
}

func receiveN(t *testing.T, hc *pgconn.HijackedConn, n int, d time.Duration) (got []string, err error) {
	t.Helper()
	_ = hc.Conn.SetReadDeadline(time.Now().Add(d))
	for len(got) < n {
		m, err := hc.Frontend.Receive()
		if err != nil {
			return got, err
		}
		got = append(got, describe(m))
	}
	return got, nil
}

// stallAt returns an option that stalls the router for d at hook point p
// once arm has been called.
func stallAt(p proxy.HookPoint, d time.Duration) (arm func(), opt proxy.Option) {
	var armed atomic.Bool
	return func() { armed.Store(true) }, proxy.WithHook(func(at proxy.HookPoint) {
		if at == p && armed.Load() {
			time.Sleep(d)
		}
	})
}

// executeWithoutSync runs sql with Parse, Bind, Execute and Flush, and
// reads its answer up to the CommandComplete: the request is not over, and
// a pump serves the session from here on.
func executeWithoutSync(t *testing.T, hc *pgconn.HijackedConn, sql string) {
	t.Helper()
	sendAll(t, hc, &pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	if rows, codes := receiveUntil[*pgproto3.CommandComplete](t, hc); len(codes) > 0 || len(rows) != 1 {
		t.Fatalf("rows %v errors %v", rows, codes)
	}
}

// pumpAboutToAnswer leaves a session whose pump has counted the
// ReadyForQuery that gives its backend back (a Sync after an Execute
// without one) and waits d before it writes it.
func pumpAboutToAnswer(t *testing.T, d time.Duration) (*router, *pgconn.HijackedConn) {
	t.Helper()
	arm, stall := stallAt(proxy.HookPumpRelease, d)
	r := startRouterWith(t, []proxy.Option{stall})
	hc := hijackDSN(t, r.dsn("globex"))
	executeWithoutSync(t, hc, "select 1")
	arm()
	sendAll(t, hc, &pgproto3.Sync{})
	time.Sleep(100 * time.Millisecond) // the pump has counted the ReadyForQuery
	return r, hc
}

// A pump that counted the ReadyForQuery giving its backend back may not
// have written it yet when a pipelining client's next request runs on
// another backend: the answers still come in order.
func TestPumpAnswerComesBeforeTheNextRequests(t *testing.T) {
	_, hc := pumpAboutToAnswer(t, 300*time.Millisecond)
	sendAll(t, hc, q("select 2"))
	got, err := receiveN(t, hc, 5, 15*time.Second)
	want := "[Z *pgproto3.RowDescription D(2) C(SELECT 1) Z]"
	if fmt.Sprint(got) != want {
		t.Fatalf("answers %v (err %v), want %s", got, err, want)
	}
}

// The same when the next request first waits for a query_rate token
// (toBackend saw the previous request's backend still attached; the pump
// gives it back during the wait).
func TestRateWaitDoesNotOvertakePumpAnswer(t *testing.T) {
	arm, stall := stallAt(proxy.HookPumpRelease, 2*time.Second)
	r := startRouterWith(t, []proxy.Option{stall}, tenantOverride("acme", cfgMap{"query_rate": 1, "query_burst": 1, "pool_wait_timeout": "5s"}))
	hc := hijackDSN(t, r.dsn("acme"))
	time.Sleep(1100 * time.Millisecond) // a full token
	arm()
	sendAll(t, hc, &pgproto3.Parse{Query: "select pg_sleep(0.4)::text"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	time.Sleep(30 * time.Millisecond)
	sendAll(t, hc, &pgproto3.Sync{})
	time.Sleep(50 * time.Millisecond)
	sendAll(t, hc, q("select 2"))
	got, err := receiveN(t, hc, 9, 15*time.Second)
	if err != nil {
		t.Fatalf("after %v: %v", got, err)
	}
	want := []string{"*pgproto3.ParseComplete", "*pgproto3.BindComplete", "D()", "C(SELECT 1)", "Z",
		"*pgproto3.RowDescription", "D(2)", "C(SELECT 1)", "Z"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("answers\n got %v\nwant %v", got, want)
	}
}

// A shutdown (drain) that comes while a pump has given its backend back but
// not yet written the answer ends the session after that answer: the
// client gets its ReadyForQuery, then the FATAL.
func TestDrainKeepsPumpAnswer(t *testing.T) {
	r, hc := pumpAboutToAnswer(t, 500*time.Millisecond)
	go r.cancel() // shutdown: busy sessions end at their next boundary
	got, err := receiveN(t, hc, 2, 15*time.Second)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("receive: %v", err)
	}
	if len(got) < 2 || got[0] != "Z" || got[1] != "E(FATAL 57P01)" {
		t.Fatalf("answers %v (err %v), want [Z E(FATAL 57P01)]", got, err)
	}
}

// The same in the common path: a plain Query relayed by the client loop
// (relaySync), which gives the backend back before it writes the answer.
func TestDrainKeepsSyncAnswer(t *testing.T) {
	arm, stall := stallAt(proxy.HookSyncRelease, 500*time.Millisecond)
	r := startRouterWith(t, []proxy.Option{stall})
	hc := hijackDSN(t, r.dsn("globex"))
	arm()
	sendAll(t, hc, q("select 1"))
	time.Sleep(150 * time.Millisecond) // the relay has counted the ReadyForQuery
	go r.cancel()                      // shutdown: busy sessions end at their next boundary
	got, err := receiveN(t, hc, 5, 15*time.Second)
	want := "[*pgproto3.RowDescription D(1) C(SELECT 1) Z E(FATAL 57P01)]"
	if fmt.Sprint(got) != want {
		t.Fatalf("answers %v (err %v), want %s", got, err, want)
	}
}

// The watchdog gives back the backend of a COPY that failed on its data
// (copyEnded) while the pump has yet to write the error and ReadyForQuery:
// the client's next request, on another backend, is answered after them.
func TestCopyGiveBackDoesNotOvertakePump(t *testing.T) {
	arm, stall := stallAt(proxy.HookPumpOut, 1500*time.Millisecond)
	r := startRouterWith(t, []proxy.Option{stall}, tenantOverride("umbrella", cfgMap{"pool_wait_timeout": "2s"}))
	setup := r.connect(t, "umbrella")
	mustExec(t, setup, "drop table if exists app_data.copy_rv; create table app_data.copy_rv (id int)")
	hc := hijackDSN(t, r.dsn("umbrella"))
	startCopy(t, hc, "copy app_data.copy_rv from stdin")
	arm()
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("bad\n")})
	// The ErrorResponse and the ReadyForQuery may come in two reads: each
	// write waits 1.5s. By 2.2s the pump has counted the ReadyForQuery and
	// the watchdog has ticked.
	time.Sleep(2200 * time.Millisecond)
	sendAll(t, hc, q("select 2"))
	got, err := receiveN(t, hc, 6, 15*time.Second)
	want := "[E(ERROR 22P02) Z *pgproto3.RowDescription D(2) C(SELECT 1) Z]"
	if fmt.Sprint(got) != want {
		t.Fatalf("answers %v (err %v), want %s", got, err, want)
	}
}

// A protocol violation that follows a request the pump has counted but not
// yet answered ends the session after that answer, as PostgreSQL would.
func TestProtocolErrorComesAfterPumpAnswer(t *testing.T) {
	_, hc := pumpAboutToAnswer(t, 500*time.Millisecond)
	if _, err := hc.Conn.Write([]byte{'z', 0, 0, 0, 4}); err != nil {
		t.Fatal(err)
	}
	got, err := receiveN(t, hc, 2, 15*time.Second)
	if len(got) < 2 || got[0] != "Z" || got[1] != "E(FATAL 08P01)" {
		t.Fatalf("answers %v (err %v), want [Z E(FATAL 08P01)]", got, err)
	}
}

// A cursor fetched in steps without Sync (Execute, Flush): the router's
// max_statement_timeout cancel for the first Execute, taken while it ran,
// is still on its way when the Execute finishes. Its CommandComplete gives
// the client its turn as a ReadyForQuery would, so it waits for the
// cancel: the client's next Execute is not cancelled.
func TestRouterCancelSparesNextExecute(t *testing.T) {
	arm, stall := stallAt(proxy.HookCancelSend, 400*time.Millisecond)
	arm()
	r := startRouterWith(t, []proxy.Option{stall}, tenantOverride("acme", cfgMap{"max_statement_timeout": "1s"}))
	hc := hijackDSN(t, r.dsn("acme"))
	sendAll(t, hc, &pgproto3.Parse{Name: "s1", Query: "select pg_sleep(1.15)::text"},
		&pgproto3.Parse{Name: "s2", Query: "select 'second'||pg_sleep(0.5)::text"},
		&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Execute{}, &pgproto3.Flush{})
	if _, codes := receiveUntil[*pgproto3.CommandComplete](t, hc); len(codes) > 0 {
		t.Fatalf("first Execute: errors %v", codes)
	}
	start := time.Now()
	sendAll(t, hc, &pgproto3.Bind{PreparedStatement: "s2"}, &pgproto3.Execute{}, &pgproto3.Flush{})
	_ = hc.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		m, err := hc.Frontend.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("the second Execute, %v after it was sent (limit 1s): %s %s", time.Since(start).Round(time.Millisecond), m.Code, m.Message)
		case *pgproto3.CommandComplete:
			sendAll(t, hc, &pgproto3.Sync{})
			receiveUntil[*pgproto3.ReadyForQuery](t, hc)
			return
		}
	}
}

// The same for a pinned session (an SQL PREPARE): its pump counts the
// ReadyForQuery that makes it idle, then writes; a drain in between ends
// the session only after the answer.
func TestDrainKeepsPinnedAnswer(t *testing.T) {
	arm, stall := stallAt(proxy.HookPumpOut, 500*time.Millisecond)
	r := startRouterWith(t, []proxy.Option{stall})
	hc := hijackDSN(t, r.dsn("globex"))
	if _, codes := simpleQuery(t, hc, "prepare p as select 1"); len(codes) > 0 {
		t.Fatal(codes)
	}
	if _, codes := simpleQuery(t, hc, "execute p"); len(codes) > 0 {
		t.Fatal(codes)
	}
	arm()
	sendAll(t, hc, q("execute p"))
	time.Sleep(150 * time.Millisecond) // the pump has counted the ReadyForQuery
	go r.cancel()
	got, err := receiveN(t, hc, 5, 15*time.Second)
	want := "[*pgproto3.RowDescription D(1) C(SELECT 1) Z E(FATAL 57P01)]"
	if fmt.Sprint(got) != want {
		t.Fatalf("answers %v (err %v), want %s", got, err, want)
	}
}

// A session ended at its boundary (shutdown drain) does not run the
// request its client loop was holding while the pump wrote the last
// answer and ended the session (Acquire hands out an idle backend whatever
// the cancelled context says).
func TestNoRequestRunsAfterTheSessionEnded(t *testing.T) {
	arm, stall := stallAt(proxy.HookPumpRelease, 500*time.Millisecond)
	r := startRouterWith(t, []proxy.Option{stall}, cfgMap{"listen": cfgMap{"shutdown_timeout": "3s"}})
	setup := r.connect(t, "globex")
	mustExec(t, setup, "drop table if exists app_data.after_end; create table app_data.after_end (id int)")
	closeConn(setup)
	t.Cleanup(func() {
		_ = cluster.Exec(context.Background(), tenants["globex"].Database, "drop table if exists app_data.after_end")
	})
	hc := hijackDSN(t, r.dsn("globex"))
	sendAll(t, hc, &pgproto3.Parse{Query: "select pg_sleep(0.3)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	time.Sleep(50 * time.Millisecond)
	arm()
	sendAll(t, hc, &pgproto3.Sync{})
	go r.cancel()                      // shutdown: the session is busy, it ends at its boundary
	time.Sleep(400 * time.Millisecond) // the pump counted the ReadyForQuery and waits to write
	sendAll(t, hc, q("insert into app_data.after_end values (1)"))
	got, err := receiveN(t, hc, 10, 5*time.Second)
	t.Logf("client got %v (%v)", got, err)
	time.Sleep(500 * time.Millisecond)
	n := superInt(t, tenants["globex"].Database, "select count(*) from app_data.after_end")
	if n != 0 {
		t.Fatalf("the insert sent after the session's last boundary ran (%d rows) though the client got %v", n, got)
	}
}
