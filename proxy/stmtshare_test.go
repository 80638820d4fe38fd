package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Another client prepared the same text on the shared backend; a client's
// Parse of it skipped after an error, then a Parse of the same name with
// another text in the next segment of the same write: PostgreSQL defines
// the name with the second text.
func TestSkippedParseOfSharedText(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select 'X'"}, &pgproto3.Sync{})
	sendAll(t, b,
		&pgproto3.Parse{Name: "e", Query: "select 1/0"}, &pgproto3.Bind{PreparedStatement: "e"}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "t", Query: "select 'X'"}, &pgproto3.Sync{},
		&pgproto3.Parse{Name: "t", Query: "select 'Y'"}, &pgproto3.Bind{PreparedStatement: "t"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	rows1, codes1 := receiveUntil[*pgproto3.ReadyForQuery](t, b)
	rows2, codes2 := receiveUntil[*pgproto3.ReadyForQuery](t, b)
	if fmt.Sprint(rows1, codes1, rows2, codes2) != "[] [22012] [Y] []" {
		t.Fatalf("got %v %v %v %v, want [] [22012] [Y] []", rows1, codes1, rows2, codes2)
	}
	wantRunsAs(t, a, "s", "X")
}

// The same without the second Parse: a Bind of the skipped statement.
func TestBindAfterSkippedParseOfSharedText(t *testing.T) {
	a, b := twoClients(t)
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select 'X'"}, &pgproto3.Sync{})
	sendAll(t, b,
		&pgproto3.Parse{Name: "e", Query: "select 1/0"}, &pgproto3.Bind{PreparedStatement: "e"}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "t", Query: "select 'X'"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "t"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	rows1, codes1 := receiveUntil[*pgproto3.ReadyForQuery](t, b)
	rows2, codes2 := receiveUntil[*pgproto3.ReadyForQuery](t, b)
	if fmt.Sprint(rows1, codes1, rows2, codes2) != "[] [22012] [] [26000]" {
		t.Fatalf("got %v %v %v %v, want [] [22012] [] [26000]", rows1, codes1, rows2, codes2)
	}
	wantRunsAs(t, a, "s", "X")
}

// A client past the statement limit gets its statement refused (54000
// when it runs); another client of the backend must not see it under the
// name the first gave it.
func TestStatementLimitRefusalStaysWithItsClient(t *testing.T) {
	a, b := twoClients(t)
	const limit = 10000
	for n := 0; n < limit; n += 1000 {
		msgs := make([]pgproto3.FrontendMessage, 0, 1001)
		for i := n; i < n+1000; i++ {
			msgs = append(msgs, &pgproto3.Parse{Name: fmt.Sprint("l", i), Query: "select 1"})
		}
		mustReady(t, a, append(msgs, &pgproto3.Sync{})...)
	}
	mustReady(t, a, &pgproto3.Parse{Name: "over", Query: "select 'over'"}, &pgproto3.Sync{})
	sendAll(t, a, &pgproto3.Bind{PreparedStatement: "over"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); fmt.Sprint(codes) != "[54000]" {
		t.Fatalf("the statement past the limit: errors %v, want [54000]", codes)
	}
	// b never prepared "over": PostgreSQL says it does not exist.
	sendAll(t, b, &pgproto3.Describe{ObjectType: 'S', Name: "over"}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, b); fmt.Sprint(codes) != "[26000]" {
		t.Fatalf("another client's Describe of the name: errors %v, want [26000]", codes)
	}
	if _, codes := simpleQuery(t, b, "deallocate over"); fmt.Sprint(codes) != "[26000]" {
		t.Fatalf("another client's DEALLOCATE of the name: errors %v, want [26000]", codes)
	}
	// a, at the limit still, prepares the name again: refused again (54000 when it runs), not 42P05.
	sendAll(t, a, &pgproto3.Parse{Name: "over", Query: "select 'over'"}, &pgproto3.Bind{PreparedStatement: "over"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, a); fmt.Sprint(codes) != "[54000]" {
		t.Fatalf("the statement past the limit, prepared again: errors %v, want [54000]", codes)
	}
}

// Two clients of a tenant with different search_path startup parameters
// prepare the same text, which names tables of different shapes in their
// schemas; each must keep running its own.
func TestSameTextUnderOtherSearchPath(t *testing.T) {
	ti := tenants["globex"]
	mustExec(t, superConn(t, ti.Database), `drop schema if exists rv_sa cascade; drop schema if exists rv_sb cascade;
		create schema rv_sa; create schema rv_sb;
		create table rv_sa.t (x int); insert into rv_sa.t values (1);
		create table rv_sb.t (y text, z text); insert into rv_sb.t values ('b', 'bb');
		grant usage on schema rv_sa, rv_sb to `+ti.User+`; grant select on rv_sa.t, rv_sb.t to `+ti.User)
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	a := hijackDSN(t, r.dsn("globex", "options='-c search_path=rv_sa'"))
	b := hijackDSN(t, r.dsn("globex", "options='-c search_path=rv_sb'"))
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: "select * from t"}, &pgproto3.Sync{})
	wantRunsAs(t, a, "s", "1")
	mustReady(t, b, &pgproto3.Parse{Name: "s", Query: "select * from t"}, &pgproto3.Sync{})
	wantRunsAs(t, b, "s", "b")
	wantRunsAs(t, a, "s", "1")
	wantRunsAs(t, b, "s", "b")
}

func superConn(t *testing.T, database string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(testCtx(t, 10*time.Second), cluster.SuperDSN(database))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// The same with TimeZone, which PostgreSQL applies to the constants of a
// text when it parses it: a client must not run a statement parsed under
// another client's time zone (a silently wrong value).
func TestSameTextUnderOtherTimeZone(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 1}))
	a := hijackDSN(t, r.dsn("globex", "options='-c TimeZone=UTC'"))
	b := hijackDSN(t, r.dsn("globex", "options='-c TimeZone=Asia/Tokyo'"))
	const q = "select '2020-01-01 00:00'::timestamptz::text"
	mustReady(t, a, &pgproto3.Parse{Name: "s", Query: q}, &pgproto3.Sync{})
	mustReady(t, b, &pgproto3.Parse{Name: "s", Query: q}, &pgproto3.Sync{})
	wantRunsAs(t, a, "s", "2020-01-01 00:00:00+00")
	wantRunsAs(t, b, "s", "2020-01-01 00:00:00+09")
	wantRunsAs(t, a, "s", "2020-01-01 00:00:00+00")
}
