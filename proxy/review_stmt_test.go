package proxy_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Another client prepared the same text on the shared backend; a client's
// Parse of it skipped after an error, then a Parse of the same name with
// another text in the next segment of the same write: PostgreSQL defines
// the name with the second text.
func TestReviewSkippedParseOfSharedText(t *testing.T) {
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
func TestReviewBindAfterSkippedParseOfSharedText(t *testing.T) {
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
