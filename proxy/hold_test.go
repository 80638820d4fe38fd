package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// A simple Query or FunctionCall sent after extended-protocol messages
// with no Sync between (proxy/hold.go): PostgreSQL runs it when those
// succeeded and ignores it when one failed. Each script runs directly and
// through a router whose pool holds one backend, and the client must see
// the same answers both ways.

// heldStep is a step sent in one write that earns rfq ReadyForQuery
// messages (a Query the backend ignores earns none).
func heldStep(rfq int, msgs ...pgproto3.FrontendMessage) soakStep {
	return soakStep{parts: []soakPart{{msgs: msgs}}, rfq: rfq, whole: true}
}

func q(sql string) *pgproto3.Query { return &pgproto3.Query{String: sql} }

// ext is Parse, Bind and Execute of the unnamed statement.
func ext(sql string) []pgproto3.FrontendMessage {
	return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: sql}, &pgproto3.Bind{}, &pgproto3.Execute{}}
}

func cat(parts ...any) []pgproto3.FrontendMessage {
	var out []pgproto3.FrontendMessage
	for _, p := range parts {
		switch p := p.(type) {
		case pgproto3.FrontendMessage:
			out = append(out, p)
		case []pgproto3.FrontendMessage:
			out = append(out, p...)
		}
	}
	return out
}

func TestQueryInsideSegment(t *testing.T) {
	const tbl = "app_data.held_q"
	setup := soakMsgs(q("begin; set local client_min_messages = warning; drop table if exists " + tbl +
		"; create table " + tbl + " (id int primary key); commit"))
	count := soakMsgs(q("select count(*) from " + tbl))
	sync := &pgproto3.Sync{}
	cases := map[string][]soakStep{
		// pgjdbc with autosave=always: BEGIN, its SAVEPOINT, the
		// statement, one Sync; a failed statement rolls back to the
		// savepoint and the transaction goes on.
		"autosave": {
			heldStep(2, cat(ext("begin"), q("savepoint pgjdbc_autosave"), ext("insert into "+tbl+" values (1)"), sync)...),
			heldStep(2, cat(q("savepoint pgjdbc_autosave"), ext("insert into "+tbl+" values (1)"), sync)...),
			soakMsgs(q("rollback to savepoint pgjdbc_autosave")),
			heldStep(2, cat(ext("select 'still in'"), q("savepoint pgjdbc_autosave"), ext("insert into "+tbl+" values (2)"), sync)...),
			soakMsgs(q("commit")),
			count,
		},
		// A failed message before the Query: it is ignored, and so is
		// everything else up to the Sync.
		"failed before": {
			heldStep(1, cat(ext("select 1/0"), q("insert into "+tbl+" values (3)"), ext("select 'skipped'"), sync)...),
			count,
		},
		"failed parse": {
			heldStep(1, &pgproto3.Parse{Query: "selec 1"}, q("insert into "+tbl+" values (4)"), sync),
			count,
		},
		// The Query joins the implicit transaction of the Executes before
		// it: when it fails, their work is undone.
		"implicit transaction": {
			heldStep(2, cat(ext("insert into "+tbl+" values (5)"), q("select 1/0"), sync)...),
			count,
			heldStep(2, cat(ext("insert into "+tbl+" values (6)"), q("select 'ok'"), sync)...),
			count,
		},
		// The Query fails in a block: what follows it fails too.
		"failed query in block": {
			heldStep(2, cat(ext("begin"), q("select 1/0"), ext("select 'aborted'"), sync)...),
			soakMsgs(q("rollback")),
		},
		// Several Queries, Describe of a statement, a row limit, and the
		// unnamed statement the Query destroys.
		"pipeline": {
			heldStep(3, cat(ext("select 1"), q("select 2"), q("select 3"), ext("select 4"), sync)...),
			heldStep(2, &pgproto3.Parse{Query: "select $1::int + 1"}, &pgproto3.Describe{ObjectType: 'S'}, q("select 5"),
				&pgproto3.Bind{Parameters: [][]byte{[]byte("1")}}, &pgproto3.Execute{}, sync),
			heldStep(2, &pgproto3.Parse{Name: "s", Query: "select generate_series(1, 3)"}, &pgproto3.Bind{PreparedStatement: "s"},
				&pgproto3.Execute{MaxRows: 1}, q("select 6"), &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, sync),
			heldStep(2, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Flush{}, q("select 7"),
				&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, sync),
		},
		// A COPY FROM STDIN run by an Execute, its data and CopyDone, then
		// a Query before the Sync.
		"copy": {
			heldStep(2, &pgproto3.Parse{Query: "copy " + tbl + " from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.CopyData{Data: []byte("7\n8\n")}, &pgproto3.CopyDone{}, q("select 'after copy'"), sync),
			count,
			// The COPY has ended (CommandComplete) when the Query comes,
			// with an Execute between.
			heldStep(2, &pgproto3.Parse{Query: "copy " + tbl + " from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.CopyData{Data: []byte("9\n")}, &pgproto3.CopyDone{},
				&pgproto3.Parse{Query: "select 'next'"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				q("select 'after copy'"), sync),
			count,
		},
		// A SET the router would follow, then a BEGIN in the same
		// segment: the SET belongs to the block, which COMMIT keeps.
		"set then begin": {
			heldStep(3, cat(ext("set application_name = 'held_set'"), q("begin"), q("commit"), sync)...),
			soakMsgs(q("show application_name")),
			soakMsgs(q("select 1")),
			soakMsgs(q("show application_name")),
			heldStep(2, cat(ext("set application_name = 'held_set2'"), q("select 1/0"), sync)...),
			soakMsgs(q("show application_name")),
		},
		"functioncall": {
			heldStep(2, cat(ext("select 1"), &pgproto3.FunctionCall{Function: 1299, ResultFormatCode: 0}, sync)...),
			heldStep(1, cat(ext("select 1/0"), &pgproto3.FunctionCall{Function: 1299}, sync)...),
			// A FunctionCall leaves the unnamed portal alone.
			heldStep(2, &pgproto3.Parse{Query: "select 'portal'"}, &pgproto3.Bind{}, &pgproto3.FunctionCall{Function: 1299},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, sync),
		},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			soakReplay(t, append([]soakStep{setup}, steps...)...)
		})
	}
}

// Answers too big for the relay's buffer, which it streams: an error that
// quotes a long value, a RowDescription of many columns.
func TestQueryInsideSegmentBigAnswers(t *testing.T) {
	var cols strings.Builder
	for i := range 700 {
		if i > 0 {
			cols.WriteString(", ")
		}
		fmt.Fprintf(&cols, "1 as c%060d", i)
	}
	soakReplay(t,
		heldStep(1, cat(ext("select repeat('x', 40000)::int"), q("select 'ignored'"), &pgproto3.Sync{})...),
		soakMsgs(q("select 'after'")),
		heldStep(2, &pgproto3.Parse{Query: "select " + cols.String()}, &pgproto3.Describe{ObjectType: 'S'},
			q("select 'held'"), &pgproto3.Sync{}),
		soakMsgs(q("select 'after'")),
	)
}

// The Query is held back until the backend has answered what came before
// it, over several writes, with the client's own Flush in between.
func TestQueryInsideSegmentAcrossWrites(t *testing.T) {
	soakReplay(t,
		soakStep{parts: []soakPart{
			{msgs: cat(ext("begin"), &pgproto3.Flush{})},
			{msgs: cat(&pgproto3.Parse{Query: "select pg_sleep(0.2)"}, &pgproto3.Bind{}, &pgproto3.Execute{})},
			{msgs: cat(q("select 'held'"), ext("select 'after'"), &pgproto3.Sync{})},
		}, rfq: 2, whole: true},
		soakMsgs(q("commit")),
	)
}

// What cannot be held: a COPY FROM STDIN waiting for its data when the
// Query comes. The session ends with 08P01; the backend serves the next
// client, and nothing of another client's reaches this one.
func TestQueryInsideCopyEndsSession(t *testing.T) {
	c, x := twoClients(t)
	mustReady(t, x, &pgproto3.Parse{Query: "select 'x-secret'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	mustReady(t, c, q("create temp table if not exists held_copy (id int)"))
	sendAll(t, c, &pgproto3.Parse{Query: "copy held_copy from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{}, q("select 'q'"), &pgproto3.Sync{})
	msgs, err := receiveUntilClosed(c, 10*time.Second)
	if err != nil || len(msgs) < 1 {
		t.Fatalf("want the FATAL and the close: %v %v", msgs, err)
	}
	last := msgs[len(msgs)-1]
	if e, ok := last.(*pgproto3.ErrorResponse); !ok || e.Severity != "FATAL" || e.Code != "08P01" ||
		!strings.Contains(e.Message, "must not follow extended-protocol messages before their Sync") {
		t.Fatalf("want FATAL 08P01 naming the rule, got %#v", msgs)
	}
	if rows := mustReady(t, x, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}); len(rows) != 1 || rows[0] != "x-secret" {
		t.Fatalf("x's unnamed statement: %v", rows)
	}
}

// A held Query that the backend ignores leaves the backend to the next
// client with the other client's unnamed statement intact, and the client
// goes on.
func TestIgnoredQueryInsideSegmentSharesBackend(t *testing.T) {
	c, x := twoClients(t)
	mustReady(t, x, &pgproto3.Parse{Query: "select 'x-secret'"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{})
	mustReady(t, c, &pgproto3.Parse{Name: "z", Query: "select 1/0"}, &pgproto3.Sync{})
	sendAll(t, c, &pgproto3.Bind{PreparedStatement: "z"}, &pgproto3.Execute{}, q("select 'q'"), &pgproto3.Sync{})
	if rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, c); len(rows) != 0 || len(codes) != 1 || codes[0] != "22012" {
		t.Fatalf("c: rows %v errors %v, want only 22012", rows, codes)
	}
	if rows := mustReady(t, x, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}); len(rows) != 1 || rows[0] != "x-secret" {
		t.Fatalf("x's unnamed statement: %v", rows)
	}
	if rows := mustReady(t, c, q("select 'c again'")); len(rows) != 1 || rows[0] != "c again" {
		t.Fatalf("c after: %v", rows)
	}
}
