package proxy_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// pgx's CopyFrom (pgconn) sends the COPY Query and starts sending its data
// without waiting for the CopyInResponse. When the COPY fails before it
// starts (a missing table, a denied privilege), the backend answers the
// Query with ErrorResponse and ReadyForQuery and ignores the data and the
// CopyDone that follow. With CopyData in the same batch as the Query, that
// ReadyForQuery leaves nothing in flight: the session must take the
// client's next message and give the backend back, not wait on the
// backend for an answer that never comes.
func TestCopyFailedBeforeStartWithDataPipelined(t *testing.T) {
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 1, "pool_wait_timeout": "500ms"}))
	hc := hijackDSN(t, r.dsn("umbrella"))
	sendAll(t, hc, &pgproto3.Query{String: "copy app_data.no_such_table_rv from stdin"}, &pgproto3.CopyData{Data: []byte("1\n")})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "42P01" {
		t.Fatalf("errors %v, want [42P01]", codes)
	}
	sendAll(t, hc, &pgproto3.CopyDone{})
	time.Sleep(100 * time.Millisecond)
	// hc is idle between transactions: another client gets the backend.
	other := hijackDSN(t, r.dsn("umbrella"))
	if rows, codes := simpleQuery(t, other, "select 'other'"); len(codes) > 0 || len(rows) != 1 {
		t.Fatalf("another client after the CopyDone: rows %v errors %v", rows, codes)
	}
	wantAfter(t, hc)
	// Also when the client stays quiet after the stray data.
	sendAll(t, hc, &pgproto3.Query{String: "copy app_data.no_such_table_rv from stdin"}, &pgproto3.CopyData{Data: []byte("1\n")})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "42P01" {
		t.Fatalf("errors %v, want [42P01]", codes)
	}
	time.Sleep(500 * time.Millisecond)
	if rows, codes := simpleQuery(t, other, "select 'other'"); len(codes) > 0 || len(rows) != 1 {
		t.Fatalf("another client while the first is quiet: rows %v errors %v", rows, codes)
	}
	wantAfter(t, hc)
}

// A COPY fails on an earlier row while the client streams a CopyData larger
// than the router's buffer; the client then leaves in the middle of that
// message. The backend has half a message: it must be closed at once, not
// reset and reused (the reset would stall on it, holding the pool's only
// slot, before failing).
func TestClientLeavesMidBigCopyDataAfterCopyFailed(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_mode": mode, "pool_size": 1, "pool_wait_timeout": "1500ms"}))
			setup := r.connect(t, "umbrella")
			scratchTable(t, setup, "umbrella", "app_data.rv_bigrow", "id int")
			closeConn(setup)
			hc := hijackDSN(t, r.dsn("umbrella"))
			startCopy(t, hc, "copy app_data.rv_bigrow from stdin")
			// A bad row, then the start of a 1 MiB CopyData.
			big := make([]byte, 5+1<<20)
			big[0] = 'd'
			binary.BigEndian.PutUint32(big[1:5], uint32(len(big)-1))
			msg, _ := (&pgproto3.CopyData{Data: []byte("bad\n")}).Encode(nil)
			msg = append(msg, big[:64<<10]...)
			if _, err := hc.Conn.Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "22P02" {
				t.Fatalf("errors %v, want [22P02]", codes)
			}
			hc.Conn.Close()
			time.Sleep(100 * time.Millisecond)
			other := hijackDSN(t, r.dsn("umbrella"))
			if rows, codes := simpleQuery(t, other, "select 'other'"); len(codes) > 0 || len(rows) != 1 {
				t.Fatalf("next client: rows %v errors %v", rows, codes)
			}
		})
	}
}
