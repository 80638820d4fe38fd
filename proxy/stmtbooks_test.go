package proxy_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The router's books of prepared statements (stmt.go) against what
// PostgreSQL does, with clients sharing backends (from a review of
// stmt.go; see also soak_test.go).

// twoClients connects two clients of globex through a router of its own
// whose pool holds one backend, which they share.
func twoClients(t *testing.T) (a, b *pgconn.HijackedConn) {
	t.Helper()
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	return hijackDSN(t, r.dsn("globex")), hijackDSN(t, r.dsn("globex"))
}

// mustReady sends msgs on hc and reads up to the ReadyForQuery, failing
// the test on an error; it returns the rows' first columns.
func mustReady(t *testing.T, hc *pgconn.HijackedConn, msgs ...pgproto3.FrontendMessage) []string {
	t.Helper()
	sendAll(t, hc, msgs...)
	rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc)
	if len(codes) > 0 {
		t.Fatalf("errors %v", codes)
	}
	return rows
}

// wantRunsAs binds the client's statement stmt on hc, executes it and
// requires exactly one row whose first column is want, and no error.
func wantRunsAs(t *testing.T, hc *pgconn.HijackedConn, stmt, want string) {
	t.Helper()
	sendAll(t, hc, &pgproto3.Bind{PreparedStatement: stmt}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 || len(rows) != 1 || rows[0] != want {
		t.Fatalf("statement %s: rows %v errors %v, want [%s]", stmt, rows, codes, want)
	}
}

// A client re-prepares its unnamed statement on another backend while the
// one that holds its previous one is busy; its later Bind of the unnamed
// statement on that first backend must run the new text, not the one the
// backend still holds (pgx's describe_exec mode does Parse+Describe, Sync,
// then Bind+Execute, Sync).
func TestUnnamedStatementOfAnEarlierParse(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 2}))
	a := hijackDSN(t, r.dsn("globex"))
	b := hijackDSN(t, r.dsn("globex"))
	mustReady(t, a, &pgproto3.Parse{Query: "select 'old'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	// b takes the backend a used and keeps it in a transaction.
	mustReady(t, b, &pgproto3.Parse{Name: "b1", Query: "begin"}, &pgproto3.Bind{PreparedStatement: "b1"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	// a's new unnamed statement lands on the other backend.
	mustReady(t, a, &pgproto3.Parse{Query: "select 'new'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	mustReady(t, b, &pgproto3.Parse{Name: "b2", Query: "commit"}, &pgproto3.Bind{PreparedStatement: "b2"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if rows := mustReady(t, a, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}); len(rows) != 1 || rows[0] != "new" {
		t.Fatalf("Bind of the unnamed statement ran %v, want [new]", rows)
	}
}

// A client's Close of its unnamed statement (which it never made) must not
// take another client's unnamed statement away from it.
func TestCloseUnnamedOfAnotherClient(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Query: "select 'a'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	mustReady(t, b, &pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{})
	if rows := mustReady(t, a, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}); len(rows) != 1 || rows[0] != "a" {
		t.Fatalf("a's unnamed statement after b closed its own: %v, want [a]", rows)
	}
}

// DEALLOCATE ALL among other statements of one Query drops every
// statement of the backend: the books must follow, or the backend's next
// client gets 26000 for its own statement.
func TestDeallocateAllInMultiStatementQuery(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select 'a'"}, &pgproto3.Sync{})
	if _, codes := simpleQuery(t, b, "deallocate all; select 1"); len(codes) > 0 {
		t.Fatal(codes)
	}
	wantRunsAs(t, a, "s", "a")
}

// What PostgreSQL drops, keeps or refuses, the router must too: a
// DEALLOCATE among other statements of a Query drops the statement; a
// Parse of a name in use fails (42P05) and the name keeps its statement.
// (A failed DEALLOCATE or DISCARD ALL, each request answered before the
// next: TestSoakReproDeallocateInFailedTransaction,
// TestSoakReproFailedDiscardAll.)
func TestStatementBooksFollowFailures(t *testing.T) {
	for name, script := range map[string][]pgproto3.FrontendMessage{
		"deallocate among statements": {&pgproto3.Parse{Name: "s2", Query: "select 2"}, &pgproto3.Sync{},
			&pgproto3.Query{String: "deallocate s2; select 3"},
			&pgproto3.Parse{Name: "s2", Query: "select 4"}, &pgproto3.Bind{PreparedStatement: "s2"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		"duplicate name": {&pgproto3.Parse{Name: "s", Query: "select 1"}, &pgproto3.Sync{},
			&pgproto3.Parse{Name: "s", Query: "select 2"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
	} {
		t.Run(name, func(t *testing.T) {
			sameAsDirect(t, nil, func(hc *pgconn.HijackedConn) { sendAll(t, hc, script...) }, false, cfgMap{})
		})
	}
}

// The router's own statement names (pgbridge_N, visible in
// pg_prepared_statements) are not a client's to use: a Bind of another
// client's by that name gets 26000, and a Close of it leaves it to its
// owner.
func TestRouterStatementNamesAreNotTheClients(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select 'a'"}, &pgproto3.Sync{})
	names, codes := simpleQuery(t, b, "select name from pg_prepared_statements where statement = 'select ''a'''")
	if len(codes) > 0 || len(names) != 1 {
		t.Fatalf("names %v errors %v", names, codes)
	}
	sendAll(t, b, &pgproto3.Bind{PreparedStatement: names[0]}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, b); len(rows) != 0 || len(codes) != 1 || codes[0] != "26000" {
		t.Errorf("b's Bind of a's statement by its router name %s: rows %v errors %v, want 26000", names[0], rows, codes)
	}
	mustReady(t, b, &pgproto3.Close{ObjectType: 'S', Name: names[0]}, &pgproto3.Sync{})
	wantRunsAs(t, a, "s", "a")
}

// An Execute of the unnamed portal that the client did not bind in the
// same Sync segment goes to a portal that does not exist (34000): on
// PostgreSQL 15 the unnamed portal a failed ROLLBACK TO SAVEPOINT leaves
// behind, after another failed Query, can crash the backend when executed
// (found by the soak), which restarts every tenant's sessions. The session
// survives; an Execute after a Bind in the same segment runs as ever.
func TestExecuteOfAnUnboundUnnamedPortal(t *testing.T) {
	r := startRouter(t)
	scratchTable(t, r.connect(t, "initech"), "initech", "app_data.stale_portal", "id int")
	for _, tenant := range []string{"initech", "initech-session"} {
		dsn := r.dsn("initech")
		if tenant == "initech-session" {
			r2 := startRouter(t, tenantOverride("initech", cfgMap{"pool_mode": "session"}))
			dsn = r2.dsn("initech")
		}
		t.Run(tenant, func(t *testing.T) {
			hc := hijackDSN(t, dsn)
			simpleQuery(t, hc, "begin")
			if _, codes := simpleQuery(t, hc, "rollback to savepoint sp"); len(codes) != 1 || codes[0] != "3B001" {
				t.Fatalf("rollback to a savepoint that does not exist: %v", codes)
			}
			simpleQuery(t, hc, "select count(*), max(id) from app_data.stale_portal")
			sendAll(t, hc, &pgproto3.Execute{}, &pgproto3.Sync{})
			if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "34000" {
				t.Fatalf("Execute of the unnamed portal left behind: errors %v, want 34000", codes)
			}
			simpleQuery(t, hc, "rollback")
			if rows := mustReady(t, hc, &pgproto3.Parse{Query: "select 'bound'"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'},
				&pgproto3.Execute{MaxRows: 1}, &pgproto3.Execute{}, &pgproto3.Sync{}); len(rows) != 1 || rows[0] != "bound" {
				t.Fatalf("Bind and Execute of the unnamed portal: %v", rows)
			}
			wantAfter(t, hc)
		})
	}
}

// DEALLOCATE ALL run inside a DO block drops every statement of the
// backend: the books must follow (confirmed by the DO's own tag), and a
// client's later Parse of a name it used must never redefine a statement
// another client shares.
func TestDeallocateAllInDoBlock(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select 'S'"}, &pgproto3.Sync{})
	mustReady(t, b, &pgproto3.Parse{Name: "b", Query: "select 'S'"}, &pgproto3.Sync{})
	if _, codes := simpleQuery(t, a, "DO $$BEGIN EXECUTE 'DEALLOCATE ALL'; END$$"); len(codes) > 0 {
		t.Fatal(codes)
	}
	// PostgreSQL: s is gone, so a may prepare s again.
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select 'T'"}, &pgproto3.Sync{})
	wantRunsAs(t, b, "b", "S")
	wantRunsAs(t, a, "s", "T")
}

// SQL DEALLOCATE of one of the router's own names is not the client's to
// run: the owner keeps its statement.
func TestDeallocateOfARouterName(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select 'a'"}, &pgproto3.Sync{})
	names, codes := simpleQuery(t, b, "select name from pg_prepared_statements where statement = 'select ''a'''")
	if len(codes) > 0 || len(names) != 1 {
		t.Fatalf("names %v errors %v", names, codes)
	}
	if _, codes := simpleQuery(t, b, "deallocate "+names[0]); len(codes) != 1 || codes[0] != "26000" {
		t.Errorf("b's DEALLOCATE %s: errors %v, want 26000 (b has no such statement)", names[0], codes)
	}
	wantRunsAs(t, a, "s", "a")
}

// A DO block that deallocates through EXECUTE of a built string hides
// the DEALLOCATE from the router's lexer: the backend loses statements the
// books say it holds. The first Bind that meets the gap fails (26000);
// the books then heal, and neither that client nor another sharing the
// backend fails again. (On PostgreSQL a's statement would stay gone; the
// router keeps the client's names and prepares them again.)
func TestStatementsDeallocatedBehindTheRoutersBack(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select 'S'"}, &pgproto3.Sync{})
	mustReady(t, b, &pgproto3.Parse{Name: "b", Query: "select 'S'"}, &pgproto3.Sync{})
	mustReady(t, b, &pgproto3.Parse{Name: "c", Query: "select 'C'"}, &pgproto3.Sync{})
	// (A function's body is not the router's to read; a DO block that
	// EXECUTEs text built at run time would pin a.)
	for _, sql := range []string{
		"create or replace function app_data.dealloc_all() returns void language plpgsql as $$begin execute 'DEALLOCATE ALL'; end$$",
		"select app_data.dealloc_all()",
	} {
		if _, codes := simpleQuery(t, a, sql); len(codes) > 0 {
			t.Fatal(codes)
		}
	}
	sendAll(t, b, &pgproto3.Bind{PreparedStatement: "b"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, b); len(codes) != 1 || codes[0] != "26000" {
		t.Fatalf("first Bind after the hidden DEALLOCATE ALL: errors %v, want [26000]", codes)
	}
	wantRunsAs(t, b, "b", "S")
	wantRunsAs(t, b, "c", "C")
	wantRunsAs(t, a, "s", "S")
	// The healed books hold what the backend holds: a statement prepared
	// again is used again, not prepared a third time.
	n, codes := simpleQuery(t, a, "select count(*) from pg_prepared_statements where statement = 'select ''S'''")
	if len(codes) > 0 || len(n) != 1 || n[0] != "1" {
		t.Fatalf("backend statements for select 'S': %v errors %v, want [1]", n, codes)
	}
}

// A client's Bind pipelined behind its own failed Parse fails (26000) on a
// router name too, but the books hold nothing wrong: the backend is kept.
func TestBindBehindFailedParseKeepsTheBackend(t *testing.T) {
	a, _ := twoClients(t)
	pid, codes := simpleQuery(t, a, "select pg_backend_pid()")
	if len(codes) > 0 {
		t.Fatal(codes)
	}
	sendAll(t, a, &pgproto3.Parse{Name: "s", Query: "select no_such_column"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	_, first := receiveUntil[*pgproto3.ReadyForQuery](t, a)
	_, second := receiveUntil[*pgproto3.ReadyForQuery](t, a)
	if len(first) != 1 || first[0] != "42703" || len(second) != 1 || second[0] != "26000" {
		t.Fatalf("errors %v then %v, want [42703] then [26000]", first, second)
	}
	if again, codes := simpleQuery(t, a, "select pg_backend_pid()"); len(codes) > 0 || again[0] != pid[0] {
		t.Fatalf("backend %v (errors %v) after the failed Bind, want %v kept", again, codes, pid)
	}
}

// receiveError sends msgs on hc and returns the first ErrorResponse up to
// the ReadyForQuery (nil if none) and the rows' first columns.
func receiveError(t *testing.T, hc *pgconn.HijackedConn, msgs ...pgproto3.FrontendMessage) (*pgproto3.ErrorResponse, []string) {
	t.Helper()
	sendAll(t, hc, msgs...)
	_ = hc.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	var first *pgproto3.ErrorResponse
	var rows []string
	for {
		m, err := hc.Frontend.Receive()
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			if first == nil {
				c := *m
				first = &c
			}
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ReadyForQuery:
			return first, rows
		}
	}
}

// A schema change that changes a prepared statement's result: PostgreSQL
// refuses the statement from then on with 0A000 "cached plan must not
// change result type" (routine RevalidateCachedQuery), on which drivers
// such as pgjdbc prepare it again. Through the router the client meets the
// same error whether its next Bind lands on the backend that holds the old
// statement or on one where the router prepared it again (PostgreSQL
// answers 08P01 there: the client's result formats are for the old
// columns). And the backend's stale statement is not used again for the
// same text, by this client or another.
func TestStatementResultChangedBySchemaChange(t *testing.T) {
	for _, newBackend := range []bool{false, true} {
		r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
		setup := r.connect(t, "globex")
		scratchTable(t, setup, "globex", "ddl_shape", "a int, c int")
		mustExec(t, setup, "insert into ddl_shape values (1, 2)")
		a := hijackDSN(t, r.dsn("globex"))
		b := hijackDSN(t, r.dsn("globex"))
		mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select * from ddl_shape"}, &pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
		mustReady(t, a, &pgproto3.Bind{PreparedStatement: "s", ResultFormatCodes: []int16{0, 1}}, &pgproto3.Execute{}, &pgproto3.Sync{})
		mustExec(t, setup, "alter table ddl_shape add column b int default 7")
		if newBackend {
			// Other settings for the tenant's backends: the next request
			// gets a new one, where a's statement is prepared again.
			r.reload(t, func(m cfgMap) {
				m["tenants"].(cfgMap)["globex"].(cfgMap)["statement_timeout"] = "77s"
			})
		}
		er, _ := receiveError(t, a, &pgproto3.Bind{PreparedStatement: "s", ResultFormatCodes: []int16{0, 1}}, &pgproto3.Execute{}, &pgproto3.Sync{})
		if er == nil || er.Code != "0A000" || er.Routine != "RevalidateCachedQuery" || er.Message != "cached plan must not change result type" {
			t.Fatalf("new backend %v: a's Bind after the schema change: %+v, want 0A000 from RevalidateCachedQuery", newBackend, er)
		}
		// a prepares it again, as pgjdbc does; b prepares the same text:
		// both get the three columns.
		for _, hc := range []*pgconn.HijackedConn{a, b} {
			if er, rows := receiveError(t, hc, &pgproto3.Parse{Name: "s2", Query: "select * from ddl_shape"},
				&pgproto3.Bind{PreparedStatement: "s2", ResultFormatCodes: []int16{0, 1, 1}}, &pgproto3.Execute{}, &pgproto3.Sync{}); er != nil || len(rows) != 1 {
				t.Fatalf("new backend %v: the statement prepared again: error %+v rows %v", newBackend, er, rows)
			}
		}
	}
}

// A backend keeps a statement prepared before a schema change (here b's);
// another client that prepared the same text after it elsewhere (c) and
// meets that stale statement gets 0A000 once (PostgreSQL would have run
// it); the books then forget the backend's statements, so its next
// execution is prepared again and runs.
func TestStaleSharedStatementAfterSchemaChange(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 2}))
	setup := r.connect(t, "globex")
	scratchTable(t, setup, "globex", "ddl_stale", "a int, c int")
	mustExec(t, setup, "insert into ddl_stale values (1, 2)")
	closeConn(setup)
	pid := func(hc *pgconn.HijackedConn) string { return oneRow(t, hc, "select pg_backend_pid()") }
	begin := func(hc *pgconn.HijackedConn) string {
		if _, codes := simpleQuery(t, hc, "begin"); len(codes) > 0 {
			t.Fatal(codes)
		}
		return pid(hc)
	}
	commit := func(hc *pgconn.HijackedConn) {
		if _, codes := simpleQuery(t, hc, "commit"); len(codes) > 0 {
			t.Fatal(codes)
		}
	}
	const text = "select * from ddl_stale"
	a, b, c := hijackDSN(t, r.dsn("globex")), hijackDSN(t, r.dsn("globex")), hijackDSN(t, r.dsn("globex"))
	begin(a) // a holds one backend: b's statement goes to the other, B
	pidB := pid(b)
	mustReady(t, b, &pgproto3.Parse{Name: "t", Query: text}, &pgproto3.Sync{})
	commit(a)
	if _, codes := simpleQuery(t, a, "alter table ddl_stale add column b int default 7"); len(codes) > 0 {
		t.Fatal(codes)
	}
	h1, h2 := hijackDSN(t, r.dsn("globex")), hijackDSN(t, r.dsn("globex"))
	hA, hB := h1, h2
	if begin(h1) == pidB {
		hA, hB = h2, h1
	}
	begin(h2)
	commit(hA)
	mustReady(t, c, &pgproto3.Parse{Name: "t", Query: text}, &pgproto3.Sync{}) // on A, after the change
	begin(hA)                                                                  // A held: c's next request goes to B
	commit(hB)
	bind := []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "t", ResultFormatCodes: []int16{0, 1, 1}}, &pgproto3.Execute{}, &pgproto3.Sync{}}
	if er, _ := receiveError(t, c, bind...); er == nil || er.Code != "0A000" {
		t.Fatalf("c's statement on the backend with the stale one: %+v, want 0A000", er)
	}
	if er, rows := receiveError(t, c, bind...); er != nil || len(rows) != 1 {
		t.Fatalf("c's statement the second time: error %+v rows %v", er, rows)
	}
}

// threeClients connects three clients of globex through a router whose
// pool holds one backend, which they share.
func threeClients(t *testing.T) (a, b, c *pgconn.HijackedConn) {
	t.Helper()
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	return hijackDSN(t, r.dsn("globex")), hijackDSN(t, r.dsn("globex")), hijackDSN(t, r.dsn("globex"))
}

// skippedParseThenBind has c (which prepared "z" as select 1/0) run z, then
// in the same segment Parse its unnamed statement anew (skipped after z's
// error), and Bind and Execute the unnamed statement in the next segment
// of the same write; it returns that segment's rows and errors.
func skippedParseThenBind(t *testing.T, c *pgconn.HijackedConn) (rows, codes []string) {
	t.Helper()
	sendAll(t, c,
		&pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{}, &pgproto3.Parse{Query: "select 'c-new'"}, &pgproto3.Sync{},
		&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, c); len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("seg1: %v", codes)
	}
	return receiveUntil[*pgproto3.ReadyForQuery](t, c)
}

// A client's unnamed Parse skipped (an error earlier in its segment), and
// a Bind of the unnamed statement in the next segment of the same write:
// the backend still holds its previous unnamed statement, another
// client's, which the Bind must never run.
func TestSkippedUnnamedParseThenBindInTheSameWrite(t *testing.T) {
	c, x := twoClients(t)
	mustReady(t, x, &pgproto3.Parse{Query: "select 'x-secret'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	mustReady(t, c, &pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Sync{})
	rows, codes := skippedParseThenBind(t, c)
	for _, r := range rows {
		if r == "x-secret" {
			t.Fatalf("c's Bind of its unnamed statement ran x's statement: rows %v errors %v (PostgreSQL: 26000, c had none)", rows, codes)
		}
	}
}

// As TestSkippedUnnamedParseThenBindInTheSameWrite, for a client that never
// made an unnamed statement: the router's Close of the backend's is
// skipped, and the Bind in the next segment must still get 26000.
func TestSkippedUnnamedCloseThenBindInTheSameWrite(t *testing.T) {
	c, x := twoClients(t)
	mustReady(t, c, &pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Sync{})
	mustReady(t, x, &pgproto3.Parse{Query: "select 'x-secret'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	sendAll(t, c,
		&pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, c); len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("seg1: %v", codes)
	}
	rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, c)
	if len(rows) > 0 || len(codes) != 1 || codes[0] != "26000" {
		t.Fatalf("c's Bind of the unnamed statement it never made: rows %v errors %v, want 26000", rows, codes)
	}
}

// The same with an unnamed DISCARD ALL left on the backend, another
// client's or the client's own earlier one: it must not run behind the
// books' back (a third client's statement then fails).
func TestSkippedUnnamedParseLeavesDiscardAll(t *testing.T) {
	for _, whose := range []string{"another client's", "own"} {
		t.Run(whose, func(t *testing.T) {
			c, x, b := threeClients(t)
			mustReady(t, b, &pgproto3.Parse{Name: "bs", Query: "select 'b'"}, &pgproto3.Sync{})
			mustReady(t, c, &pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Sync{})
			owner := x
			if whose == "own" {
				owner = c
			}
			mustReady(t, owner, &pgproto3.Parse{Query: "discard all"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
			rows, codes := skippedParseThenBind(t, c)
			t.Logf("c's second segment: rows %v errors %v", rows, codes)
			wantRunsAs(t, b, "bs", "b")
		})
	}
}

// A failed COPY run by an Execute leaves the session unsure of its count of
// answers (copy_sync): the backend skipped the unnamed Parse behind the
// COPY, keeping another client's unnamed statement, which the next Bind of
// the unnamed statement must not run.
func TestUnsureCopySessionSetsUnnamedAgain(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1}))
	scratchTable(t, r.connect(t, "umbrella"), "umbrella", "app_data.unsure_copy", "id int")
	c := hijackDSN(t, r.dsn("umbrella"))
	x := hijackDSN(t, r.dsn("umbrella"))
	_ = c.Conn.SetDeadline(time.Now().Add(30 * time.Second))
	mustReady(t, x, &pgproto3.Parse{Query: "select 'x-secret'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	mustReady(t, c, &pgproto3.Parse{Name: "cp", Query: "copy app_data.unsure_copy from stdin"}, &pgproto3.Sync{})
	sendAll(t, c, &pgproto3.Bind{PreparedStatement: "cp"}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.CopyData{Data: []byte("not a number\n")},
		&pgproto3.Parse{Query: "select 'c-new'"}, &pgproto3.Sync{})
	rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, c)
	t.Logf("first request: rows %v errors %v", rows, codes)
	sendAll(t, c, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	rows, codes = receiveUntil[*pgproto3.ReadyForQuery](t, c)
	for _, r := range rows {
		if r == "x-secret" {
			t.Fatalf("c's Bind of its unnamed statement ran x's: rows %v errors %v (PostgreSQL: 26000, c's Parse never ran)", rows, codes)
		}
	}
	// PostgreSQL answers 26000 (c's Parse never ran); the books of an
	// unsure session are not settled, so the router prepares c's own
	// statement again and runs it.
	if len(codes) == 0 && (len(rows) != 1 || rows[0] != "c-new") || len(codes) > 0 && (len(codes) != 1 || codes[0] != "26000") {
		t.Fatalf("rows %v errors %v, want 26000 or c's own statement", rows, codes)
	}
}

// A client's Close of its unnamed statement skipped (an error before it),
// then a simple Query, which drops the unnamed statement anyway: the skip
// gives nothing back, and a Bind of the unnamed statement gets 26000.
func TestSkippedUnnamedCloseThenQuery(t *testing.T) {
	sameTranscripts(t, [][]pgproto3.FrontendMessage{
		{&pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Sync{}},
		{&pgproto3.Parse{Query: "select 'mine'"}, &pgproto3.Sync{}},
		{&pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{}, &pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{},
			&pgproto3.Query{String: "select 'q'"}},
		{&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
	}, []int{1, 1, 2, 1})
}

// The same with an unnamed DISCARD ALL: it must not come back to run
// behind the books' back.
func TestSkippedUnnamedCloseThenQueryKeepsDiscardAllDropped(t *testing.T) {
	c, b := twoClients(t)
	mustReady(t, b, &pgproto3.Parse{Name: "bs", Query: "select 'b'"}, &pgproto3.Sync{})
	mustReady(t, c, &pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Sync{})
	mustReady(t, c, &pgproto3.Parse{Query: "discard all"}, &pgproto3.Sync{})
	sendAll(t, c, &pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{}, &pgproto3.Close{ObjectType: 'S'}, &pgproto3.Sync{},
		&pgproto3.Query{String: "select 'q'"})
	receiveUntil[*pgproto3.ReadyForQuery](t, c)
	receiveUntil[*pgproto3.ReadyForQuery](t, c)
	sendAll(t, c, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, c)
	t.Logf("c's Bind of the unnamed statement: rows %v errors %v (PostgreSQL: 26000)", rows, codes)
	wantRunsAs(t, b, "bs", "b")
}

// A CopyDone or CopyFail outside a COPY, after a Bind with no Sync between:
// PostgreSQL ignores it and the request goes on up to the Sync, so the
// backend, with the client's portal bound, must not go to another client.
func TestCopyEndOutsideCopyDoesNotEndTheRequest(t *testing.T) {
	for name, end := range map[string]pgproto3.FrontendMessage{
		"CopyFail": &pgproto3.CopyFail{Message: "x"},
		"CopyDone": &pgproto3.CopyDone{},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := twoClients(t)
			sendAll(t, a, &pgproto3.Parse{Name: "s", Query: "select 'a-secret'"}, &pgproto3.Sync{},
				&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"}, end)
			if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) > 0 {
				t.Fatal(codes)
			}
			time.Sleep(100 * time.Millisecond) // (a's backend would be back in the pool)
			sendAll(t, b, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
			// b waits for the backend a holds; a's Sync ends a's request
			// and lets b have it.
			time.Sleep(200 * time.Millisecond)
			sendAll(t, a, &pgproto3.Sync{})
			rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, b)
			if len(rows) > 0 || len(codes) != 1 || codes[0] != "34000" {
				t.Fatalf("b's Execute of a portal it never bound: rows %v errors %v, want 34000", rows, codes)
			}
			if rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) > 0 || len(rows) != 0 {
				t.Fatalf("a's request: rows %v errors %v", rows, codes)
			}
		})
	}
}
