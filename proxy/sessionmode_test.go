package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Session mode: a notification reaches an idle client; a COPY that failed
// mid-stream and a client that leaves leave nothing on the backend for the
// next client (listens, prepared statements, notifications).
func TestSessionModeNotifyCopyAndReset(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_mode": "session", "pool_size": 1, "pool_wait_timeout": "3s"}))
	ti := tenants["umbrella"]
	ctx := testCtx(t, 30*time.Second)
	direct, err := pgx.Connect(ctx, cluster.SuperDSN(ti.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())

	a := hijackDSN(t, r.dsn("umbrella"))
	simpleQuery(t, a, "listen rvch")
	pid, _ := simpleQuery(t, a, "select pg_backend_pid()::text")
	if _, err := direct.Exec(ctx, "notify rvch, 'hello'"); err != nil {
		t.Fatal(err)
	}
	_ = a.Conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	m, err := a.Frontend.Receive()
	if n, ok := m.(*pgproto3.NotificationResponse); err != nil || !ok || n.Payload != "hello" {
		t.Fatalf("idle notification: %#v %v", m, err)
	}
	// COPY fails mid stream, then the client leaves mid COPY data
	simpleQuery(t, a, "create temp table rvt(x int)")
	startCopy(t, a, "copy rvt from stdin")
	sendAll(t, a, &pgproto3.CopyData{Data: []byte("bad\n")})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != 1 {
		t.Fatal(codes)
	}
	sendAll(t, a, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.Parse{Name: "s1", Query: "select 1"}, &pgproto3.Sync{})
	receiveUntil[*pgproto3.ReadyForQuery](t, a)
	sendAll(t, a, &pgproto3.Terminate{})
	a.Conn.Close()
	time.Sleep(200 * time.Millisecond)
	if _, err := direct.Exec(ctx, "notify rvch, 'leak'"); err != nil {
		t.Fatal(err)
	}
	b := hijackDSN(t, r.dsn("umbrella"))
	pid2, _ := simpleQuery(t, b, "select pg_backend_pid()::text")
	if len(pid2) != 1 || len(pid) != 1 || pid2[0] != pid[0] {
		t.Fatalf("backends %v then %v: want the one backend (pool_size 1) reset and reused", pid, pid2)
	}
	rows, codes := simpleQuery(t, b, "select count(*)::text from pg_listening_channels()")
	if len(codes) > 0 || rows[0] != "0" {
		t.Fatal(rows, codes)
	}
	sendAll(t, b, &pgproto3.Parse{Name: "s1", Query: "select 2"}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, b); len(codes) > 0 {
		t.Fatal(codes)
	}
	_ = b.Conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if m, err := b.Frontend.Receive(); err == nil {
		t.Fatalf("b got %#v", m)
	}
}

// Session mode: a Query written behind extended-protocol messages with no
// Sync between them, one of which fails, is skipped by PostgreSQL (it gets no
// ReadyForQuery of its own). The router must not keep counting it as in
// flight: the idle session would look busy for ever, and the watchdog ends
// it under max_statement_timeout (57014, "stuck"), a drain never finds it
// idle, and its backend is closed rather than reset when it leaves.
func TestSessionModeQueryBehindFailedExtended(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_mode": "session", "pool_size": 1, "max_statement_timeout": "500ms"}))
	hc := hijackDSN(t, r.dsn("umbrella"))
	sendAll(t, hc, &pgproto3.Parse{Query: "selec 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Query{String: "select 'q'"}, &pgproto3.Sync{})
	if rows, codes, err := tryReceiveReady(hc, 3*time.Second); err != nil || len(rows) != 0 || len(codes) != 1 || codes[0] != "42601" {
		t.Fatalf("rows %v errors %v read error %v, want [42601] only (PostgreSQL skips the Query)", rows, codes, err)
	}
	time.Sleep(3500 * time.Millisecond) // max_statement_timeout + cancelGrace, idle
	wantAfter(t, hc)
}
