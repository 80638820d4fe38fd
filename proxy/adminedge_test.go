package proxy_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// A FunctionCall is a request of its own, like a Query: the console must
// refuse it and say ReadyForQuery, or the client waits for ever.
func TestAdminFunctionCallGetsAnAnswer(t *testing.T) {
	r := startRouter(t)
	hc := hijackDSN(t, r.adminDSN())
	sendAll(t, hc, &pgproto3.FunctionCall{Function: 1598}) // random()
	_, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc)
	if len(codes) != 1 || codes[0] != "0A000" {
		t.Fatalf("FunctionCall: errors %v, want one 0A000", codes)
	}
	// Twice: each FunctionCall gets its own answer.
	sendAll(t, hc, &pgproto3.FunctionCall{Function: 1598})
	if _, codes = receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "0A000" {
		t.Fatalf("second FunctionCall: errors %v, want one 0A000", codes)
	}
	if rows, codes := simpleQuery(t, hc, "SHOW HELP"); len(codes) > 0 || len(rows) == 0 {
		t.Fatalf("SHOW HELP after: rows %v errors %v", rows, codes)
	}
}

// A console query larger than the console reads is refused with an error
// the client can read, not a silent close.
func TestAdminHugeQueryIsRefusedWithAnError(t *testing.T) {
	r := startRouter(t)
	hc := hijackDSN(t, r.adminDSN())
	// The header alone: the console refuses on the length it announces.
	if _, err := hc.Conn.Write([]byte{'Q', 0, 0x20, 0, 0}); err != nil { // 2 MiB
		t.Fatal(err)
	}
	wantFatalThenClose(t, hc, "54000")
}

// A client that hangs up while its query waits for a RESUME is gone: its
// session must end rather than count as a waiting client (and against
// max_client_connections) for as long as the PAUSE lasts.
func TestClientLeavingDuringPauseEnds(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"max_client_connections": 1}))
	adm := r.admin(t)
	mustExec(t, adm, "PAUSE acme")
	hc := hijackDSN(t, r.dsn("acme"))
	sendAll(t, hc, &pgproto3.Query{String: "select 1"})
	eventually(t, 5*time.Second, "acme's client to be shown waiting", func() bool {
		return rowFor(adminRows(t, adm, "SHOW POOLS"), "tenant", "acme")["cl_waiting"] == "1"
	})
	// As drivers close: Terminate, then the socket.
	sendAll(t, hc, &pgproto3.Terminate{})
	_ = hc.Conn.Close()
	eventually(t, 5*time.Second, "the session of the client that left to end", func() bool {
		return rowFor(adminRows(t, adm, "SHOW CLIENTS"), "tenant", "acme") == nil
	})
	// Its place under max_client_connections is free again.
	c := r.connect(t, "acme")
	mustExec(t, adm, "RESUME acme")
	if n := queryInt(t, c, "select 2"); n != 2 {
		t.Fatalf("after RESUME: %d", n)
	}
}

// A console message with a length field below 4 is a protocol violation
// the client is told about (08P01), as a tenant session's would be.
func TestAdminBadMessageLength(t *testing.T) {
	r := startRouter(t)
	hc := hijackDSN(t, r.adminDSN())
	if _, err := hc.Conn.Write([]byte{'Q', 0, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	wantFatalThenClose(t, hc, "08P01")
}

// wantFatalThenClose reads from hc until the router closes it: exactly one
// message, a FATAL ErrorResponse with SQLSTATE code.
func wantFatalThenClose(t *testing.T, hc *pgconn.HijackedConn, code string) {
	t.Helper()
	msgs, err := receiveUntilClosed(hc, 10*time.Second)
	if err != nil {
		t.Fatalf("not closed: %v", err)
	}
	if len(msgs) != 1 {
		t.Fatalf("want one ErrorResponse before the close, got %v", msgs)
	}
	if e, ok := msgs[0].(*pgproto3.ErrorResponse); !ok || e.Code != code || e.Severity != "FATAL" {
		t.Fatalf("want FATAL %s, got %#v", code, msgs[0])
	}
}
