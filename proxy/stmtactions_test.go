package proxy_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// DISCARD ALL and DEALLOCATE that a client prepares with Parse, run
// through the router's statement books (stmtAction in stmt.go), several
// of them from a review of that code.

// sameTranscripts runs steps on a connection of umbrella's directly to
// PostgreSQL and through a router whose pool holds one backend, reading
// answers[i] ReadyForQuery messages after step i (one when answers is
// nil), and checks that both saw the same rows and errors.
func sameTranscripts(t *testing.T, steps [][]pgproto3.FrontendMessage, answers []int) {
	t.Helper()
	ti := tenants["umbrella"]
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1}))
	transcript := func(dsn string) string {
		hc := hijackDSN(t, dsn)
		defer hc.Conn.Close()
		var b strings.Builder
		for i, step := range steps {
			sendAll(t, hc, step...)
			n := 1
			if answers != nil {
				n = answers[i]
			}
			for range n {
				rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc)
				fmt.Fprintf(&b, "%v%v ", rows, codes)
			}
		}
		return b.String()
	}
	direct := transcript(cluster.DSN(ti.User, ti.Password, ti.Database))
	if routed := transcript(r.dsn("umbrella")); routed != direct {
		t.Fatalf("through the router: %s\ndirectly:           %s", routed, direct)
	}
}

// DISCARD ALL, DEALLOCATE ALL and DEALLOCATE name prepared with Parse act
// when they are executed, not when they are prepared: a statement the
// client deallocates is there until then, and gone after, whichever
// backends the Parse and the Execute ran on.
func TestPreparedDiscardAndDeallocateActWhenExecuted(t *testing.T) {
	parse := func(name, q string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Parse{Name: name, Query: q}, &pgproto3.Sync{}}
	}
	run := func(name string) []pgproto3.FrontendMessage {
		return []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: name}, &pgproto3.Execute{}, &pgproto3.Sync{}}
	}
	scripts := map[string][][]pgproto3.FrontendMessage{
		"deallocate name": {parse("s", "select 's'"), parse("d", "deallocate s"), run("s"), run("d"), run("s"), run("d"),
			parse("s", "select 't'"), run("s")},
		"deallocate all": {parse("s", "select 's'"), parse("d", "deallocate all"), run("s"), parse("t", "select 't'"), run("d"),
			run("s"), run("t"), run("d")},
		"discard all": {parse("d", "discard all"), parse("s", "select 's'"), run("s"), run("d"), run("s"), run("d")},
		"deallocate in a pipeline": {{&pgproto3.Parse{Name: "s", Query: "select 's'"}, &pgproto3.Parse{Name: "d", Query: "deallocate s"},
			&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{},
			&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, run("s")},
		"failed discard all in a pipeline": {{&pgproto3.Query{String: "begin"}},
			{&pgproto3.Parse{Name: "d", Query: "discard all"}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Describe{ObjectType: 'P'},
				&pgproto3.Execute{}, &pgproto3.Bind{PreparedStatement: "d", Parameters: [][]byte{[]byte("5")}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Query{String: "rollback"}}, {&pgproto3.Query{String: "begin"}},
			{&pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "d"}, &pgproto3.Describe{ObjectType: 'S', Name: "d"}, &pgproto3.Sync{}},
			{&pgproto3.Query{String: "rollback"}}},
		"failed deallocate": {parse("s", "select 's'"), parse("d", "deallocate s"), {&pgproto3.Query{String: "begin; select 1/0"}},
			run("d"), {&pgproto3.Query{String: "rollback"}}, run("s")},
	}
	for name, steps := range scripts {
		t.Run(name, func(t *testing.T) { sameTranscripts(t, steps, nil) })
	}
}

// A DISCARD ALL prepared on one backend and executed on another drops that
// other backend's statements: the books of the backend that ran it must
// follow, or its next client gets 26000 for its own statement.
func TestPreparedDiscardAllOnAnotherClientsBackend(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Name: "d", Query: "discard all"}, &pgproto3.Sync{})
	mustReady(t, b, &pgproto3.Parse{Name: "b", Query: "select 'B'"}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	wantRunsAs(t, b, "b", "B")
	// Each execution acts again, like PostgreSQL's.
	mustReady(t, b, &pgproto3.Parse{Name: "d", Query: "deallocate all"}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select 'A'"}, &pgproto3.Sync{})
	wantRunsAs(t, a, "s", "A")
}

// A DISCARD ALL the backend skips (an error earlier in its segment) gives
// the books back what they held before it, but not the statements the
// router prepared in the same segment, which the backend skipped too: a
// book naming a statement the backend lacks fails every later client of
// that backend with 26000.
func TestSkippedDiscardAllForgetsSkippedParses(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select 'a'"}, &pgproto3.Parse{Name: "d", Query: "discard all"}, &pgproto3.Sync{})
	// b drops the backend's statements: a's are prepared again when used.
	if _, codes := simpleQuery(t, b, "deallocate all"); len(codes) > 0 {
		t.Fatal(codes)
	}
	sendAll(t, a, &pgproto3.Parse{Query: "select 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("errors %v, want [22012]", codes)
	}
	for _, c := range []*pgconn.HijackedConn{a, b} {
		if c == b {
			mustReady(t, b, &pgproto3.Parse{Name: "s", Query: "select 'a'"}, &pgproto3.Sync{})
		}
		wantRunsAs(t, c, "s", "a")
	}
}

// A DISCARD ALL skipped in one segment, a DEALLOCATE ALL run in the next of
// the same pipeline: what the first gives back, the second drops.
func TestSkippedDiscardAllThenDeallocateAll(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, b, &pgproto3.Parse{Name: "b", Query: "select 'b'"}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Parse{Name: "e", Query: "select 1/0"}, &pgproto3.Parse{Name: "d1", Query: "discard all"}, &pgproto3.Sync{})
	sendAll(t, a, &pgproto3.Bind{PreparedStatement: "e"}, &pgproto3.Execute{}, &pgproto3.Bind{PreparedStatement: "d1"}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "deallocate all"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("errors %v, want [22012]", codes)
	}
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != 0 {
		t.Fatalf("DEALLOCATE ALL: errors %v", codes)
	}
	wantRunsAs(t, b, "b", "b")
}

// A prepared DISCARD ALL, executed, drops named statements only: the
// backend's unnamed statement stays, another client's perhaps, and a
// client that never made one must not bind it.
func TestPreparedDiscardAllKeepsUnnamed(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, b, &pgproto3.Parse{Query: "select 'b secret'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Parse{Name: "d", Query: "discard all"}, &pgproto3.Sync{})
	sendAll(t, a, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{},
		&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) > 0 {
		t.Fatalf("discard all: %v", codes)
	}
	rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a)
	if len(rows) != 0 || len(codes) != 1 || codes[0] != "26000" {
		t.Fatalf("a's Bind of the unnamed statement it never made: rows %v errors %v, want 26000", rows, codes)
	}
}

// A prepared DISCARD ALL that the backend skips gives nothing of the
// unnamed statement back: the router's Parse of the client's unnamed
// statement in front of it was skipped too.
func TestFailedPreparedDiscardRestoresUnnamed(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Name: "d", Query: "discard all"}, &pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Parse{Query: "select 'a'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	mustReady(t, b, &pgproto3.Parse{Query: "select 'b secret'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	sendAll(t, a, &pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{},
		&pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("errors %v, want [22012]", codes)
	}
	if rows := mustReady(t, a, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}); len(rows) != 1 || rows[0] != "a" {
		t.Fatalf("a's unnamed statement ran %v, want [a]", rows)
	}
}

// An action's record may outlive its portal (a ROLLBACK TO SAVEPOINT drops
// the portal, a cursor takes its name): applied to a portal that runs
// something else, it is undone, and the CommandComplete of a real
// DEALLOCATE ALL behind it still confirms that one.
func TestStalePortalActionIsUndone(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, b, &pgproto3.Parse{Name: "bs", Query: "select 'b'"}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Parse{Name: "d", Query: "discard all"}, &pgproto3.Sync{})
	simpleQuery(t, a, "begin; savepoint sp")
	mustReady(t, a, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "d"}, &pgproto3.Sync{})
	if _, codes := simpleQuery(t, a, "rollback to savepoint sp; declare p cursor for select 1"); len(codes) > 0 {
		t.Fatal(codes)
	}
	mustReady(t, a, &pgproto3.Execute{Portal: "p"}, &pgproto3.Parse{Query: "deallocate all"},
		&pgproto3.Bind{DestinationPortal: "p2"}, &pgproto3.Execute{Portal: "p2"}, &pgproto3.Sync{})
	simpleQuery(t, a, "commit")
	wantRunsAs(t, b, "bs", "b")
}

// A Parse of a name whose first Parse is still in flight goes out under the
// same backend name; when the backend skips both, what they defined is
// dead, and a DEALLOCATE ALL skipped meanwhile does not give it back.
func TestSkippedDuplicateParseIsDead(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, b, &pgproto3.Parse{Name: "bx", Query: "select 2"}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Parse{Name: "sl", Query: "select pg_sleep(0.5)::text"},
		&pgproto3.Parse{Name: "da", Query: "deallocate all"}, &pgproto3.Sync{})
	// A real DEALLOCATE ALL: the backend and the books drop everything (b's too).
	mustReady(t, a, &pgproto3.Bind{PreparedStatement: "da"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Parse{Name: "sl", Query: "select pg_sleep(0.5)::text"},
		&pgproto3.Parse{Name: "da", Query: "deallocate all"}, &pgproto3.Sync{})
	sendAll(t, a,
		// seg1: x's Parse is skipped
		&pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{}, &pgproto3.Parse{Name: "x", Query: "select 1"}, &pgproto3.Sync{},
		// seg2 (its Sync comes later, so that a pump reads the answers):
		// a Parse of x again (over path), skipped after a slow error
		&pgproto3.Bind{PreparedStatement: "sl"}, &pgproto3.Execute{}, &pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "x", Query: "select 2"})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("seg1: %v", codes)
	}
	// seg2's Sync, and seg3, written while seg2 sleeps: a DEALLOCATE ALL that is skipped.
	sendAll(t, a, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{}, &pgproto3.Bind{PreparedStatement: "da"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("seg2: %v", codes)
	}
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("seg3: %v", codes)
	}
	wantRunsAs(t, b, "bx", "2")
}

// DEALLOCATE is not transactional: a DO block that deallocates and then
// fails has dropped the statements all the same, so the books must not get
// them back (the client's own names are, and are prepared again on use).
func TestFailingDoBlockDeallocates(t *testing.T) {
	const do = "DO $$BEGIN EXECUTE 'DEALLOCATE ALL'; PERFORM 1/0; END$$"
	for _, prepared := range []bool{true, false} {
		name := "simple"
		if prepared {
			name = "prepared"
		}
		t.Run(name, func(t *testing.T) {
			a, b := twoClients(t)
			mustReady(t, b, &pgproto3.Parse{Name: "bs", Query: "select 'b'"}, &pgproto3.Sync{})
			if prepared {
				sendAll(t, a, &pgproto3.Parse{Name: "d", Query: do}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{})
			} else {
				sendAll(t, a, &pgproto3.Query{String: do})
			}
			if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != 1 || codes[0] != "22012" {
				t.Fatalf("DO: %v", codes)
			}
			wantRunsAs(t, b, "bs", "b")
		})
	}
}

// Actions of portals end with their transaction: binding ever new portals
// to a prepared DEALLOCATE ALL does not grow the router's memory.
func TestPortalActionsEndWithTheirPortals(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	a := hijackDSN(t, r.dsn("globex"))
	mustReady(t, a, &pgproto3.Parse{Name: "d", Query: "deallocate all"}, &pgproto3.Sync{})
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	pad := strings.Repeat("x", 60<<10)
	for i := 0; i < 300; i++ {
		// Each portal ends with its implicit transaction at the Sync.
		mustReady(t, a, &pgproto3.Bind{DestinationPortal: fmt.Sprintf("%s%d", pad, i), PreparedStatement: "d"}, &pgproto3.Sync{})
	}
	after := heap()
	t.Logf("heap before %d MB, after 300 portals of 60 KB: %d MB", before>>20, after>>20)
	if after > before+10<<20 {
		t.Fatalf("heap grew by %d MB for portals that no longer exist", (after-before)>>20)
	}
}

// Book changes after other segments that fail, and of duplicate Parses,
// against PostgreSQL.
func TestPreparedActionsAfterFailures(t *testing.T) {
	// The first Parse of x skipped, a second Parse of x that runs, a
	// DISCARD ALL skipped: x is PostgreSQL's second statement.
	t.Run("duplicate parse then skipped discard", func(t *testing.T) {
		sameTranscripts(t, [][]pgproto3.FrontendMessage{
			{&pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Parse{Name: "d", Query: "discard all"}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{}, &pgproto3.Parse{Name: "x", Query: "select 1"}, &pgproto3.Sync{},
				&pgproto3.Parse{Name: "x", Query: "select 2"}, &pgproto3.Sync{},
				&pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{}, &pgproto3.Bind{PreparedStatement: "d"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "x"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		}, []int{1, 3, 1})
	})
	// A DISCARD ALL skipped gives s back; a prepared DEALLOCATE of
	// another name in the next segment does not take it away again.
	t.Run("skipped discard then deallocate name", func(t *testing.T) {
		sameTranscripts(t, [][]pgproto3.FrontendMessage{
			{&pgproto3.Parse{Name: "s", Query: "select 's'"}, &pgproto3.Parse{Name: "z", Query: "select 1/0"},
				&pgproto3.Parse{Name: "dd", Query: "discard all"}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{}, &pgproto3.Bind{PreparedStatement: "dd"}, &pgproto3.Execute{}, &pgproto3.Sync{},
				&pgproto3.Parse{Name: "s2", Query: "select 2"}, &pgproto3.Parse{Name: "dl2", Query: "deallocate s2"},
				&pgproto3.Bind{PreparedStatement: "dl2"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			{&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		}, []int{1, 2, 1})
	})
}

// sendAndReceive sends msgs and reads up to the ReadyForQuery.
func sendAndReceive(t *testing.T, hc *pgconn.HijackedConn, msgs ...pgproto3.FrontendMessage) ([]string, []string) {
	t.Helper()
	sendAll(t, hc, msgs...)
	return receiveUntil[*pgproto3.ReadyForQuery](t, hc)
}

// A Close of a portal with an action, then a Bind of the same name to a
// prepared DEALLOCATE ALL in the same Sync segment: the CloseComplete
// takes away the record of the portal it closed, not the new one's.
func TestCloseThenRebindPortalInOneSegment(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, b, &pgproto3.Parse{Name: "bs", Query: "select 'b'"}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Parse{Name: "da", Query: "deallocate all"}, &pgproto3.Sync{})
	simpleQuery(t, a, "begin")
	mustReady(t, a, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "da"}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Close{ObjectType: 'P', Name: "p"},
		&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "da"}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{})
	if _, codes := simpleQuery(t, a, "commit"); len(codes) > 0 {
		t.Fatal(codes)
	}
	wantRunsAs(t, b, "bs", "b")
}

// A Bind of a portal that exists fails (42P03) and leaves the portal as it
// was, and one skipped after an error never ran: the portal still runs
// DEALLOCATE ALL, whatever the failed Bind named.
func TestFailedBindOfActionPortal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failing []pgproto3.FrontendMessage
		code    string
	}{
		{"refused", []pgproto3.FrontendMessage{&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "dd"}, &pgproto3.Sync{}}, "42P03"},
		{"refused, no action", []pgproto3.FrontendMessage{&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "q"}, &pgproto3.Sync{}}, "42P03"},
		{"skipped", []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{},
			&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "dd"}, &pgproto3.Sync{}}, "22012"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := twoClients(t)
			mustReady(t, b, &pgproto3.Parse{Name: "bs", Query: "select 'b'"}, &pgproto3.Sync{})
			mustReady(t, a, &pgproto3.Parse{Name: "da", Query: "deallocate all"}, &pgproto3.Parse{Name: "dd", Query: "discard all"},
				&pgproto3.Parse{Name: "q", Query: "select 1"}, &pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Sync{})
			simpleQuery(t, a, "begin")
			mustReady(t, a, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "da"}, &pgproto3.Sync{})
			simpleQuery(t, a, "savepoint sp")
			if _, codes := sendAndReceive(t, a, tc.failing...); len(codes) != 1 || codes[0] != tc.code {
				t.Fatalf("errors %v, want [%s]", codes, tc.code)
			}
			if _, codes := simpleQuery(t, a, "rollback to savepoint sp"); len(codes) > 0 {
				t.Fatal(codes)
			}
			mustReady(t, a, &pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{}) // DEALLOCATE ALL
			if _, codes := simpleQuery(t, a, "commit"); len(codes) > 0 {
				t.Fatal(codes)
			}
			wantRunsAs(t, b, "bs", "b")
		})
	}
}

// A CommandComplete "DEALLOCATE" of a statement the books do not follow
// (an SQL-level DEALLOCATE, in a session pinned by PREPARE) must not undo
// a DEALLOCATE ALL still to run.
func TestUnrelatedTagLeavesPendingDeallocateAll(t *testing.T) {
	sameTranscripts(t, [][]pgproto3.FrontendMessage{
		{&pgproto3.Parse{Name: "old", Query: "select 'old'"}, &pgproto3.Sync{}},
		{&pgproto3.Query{String: "PREPARE x AS select 1"}},
		{&pgproto3.Query{String: "select pg_sleep(0.2); DEALLOCATE x"},
			&pgproto3.Query{String: "DEALLOCATE ALL"},
			&pgproto3.Parse{Name: "s", Query: "select 1"}, &pgproto3.Sync{},
			&pgproto3.Query{String: "DEALLOCATE s"}},
		{&pgproto3.Parse{Name: "old", Query: "select 'new'"}, &pgproto3.Bind{PreparedStatement: "old"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
	}, []int{1, 1, 4, 1})
}

// A second Parse of x pipelined while the first is in flight defines x if
// the backend skips the first: a Bind of x written before that is known
// may run either, and the router must not miss that it may deallocate.
func TestBindOfNameWithTwoParsesInFlight(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, b, &pgproto3.Parse{Name: "bs", Query: "select 'b'"}, &pgproto3.Sync{})
	mustReady(t, a, &pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Parse{Name: "sl", Query: "select pg_sleep(0.2)::text"}, &pgproto3.Sync{})
	sendAll(t, a,
		&pgproto3.Bind{PreparedStatement: "sl"}, &pgproto3.Execute{}, &pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "x", Query: "select 1"}, &pgproto3.Sync{},
		&pgproto3.Parse{Name: "x", Query: "deallocate all"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "x"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	for i, want := range []int{1, 0, 0} {
		if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); len(codes) != want {
			t.Fatalf("a's segment %d: errors %v", i, codes)
		}
	}
	wantRunsAs(t, b, "bs", "b")
}

// A prepared DEALLOCATE name keeps the parameter types the client declared.
func TestPreparedDeallocateKeepsParamTypes(t *testing.T) {
	sameTranscripts(t, [][]pgproto3.FrontendMessage{
		{&pgproto3.Parse{Name: "s", Query: "select 1"}, &pgproto3.Parse{Name: "d", Query: "deallocate s", ParameterOIDs: []uint32{23}}, &pgproto3.Sync{}},
		{&pgproto3.Bind{PreparedStatement: "d", Parameters: [][]byte{[]byte("1")}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		{&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
	}, nil)
}
