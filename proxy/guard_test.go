package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Issue 4: every limit is tripped here against the real cluster, with its
// SQLSTATE checked, and with another session of the same tenant and
// another tenant shown to be unaffected.

// statsOf reads a tenant's live counters.
func (r *router) counter(tenant, kind, reason string) uint64 {
	st := r.srv.TenantStats(tenant)
	switch kind {
	case "reject":
		return st.Rejections.Get(reason)
	case "cancel":
		return st.Cancels.Get(reason)
	case "close":
		return st.SessionCloses.Get(reason)
	case "pin":
		return st.Pins.Get(reason)
	}
	panic(kind)
}

func TestMaxStatementTimeoutCannotBeSetAway(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"max_statement_timeout": "1s"}))
	conn := r.connect(t, "acme")
	other := r.connect(t, "globex")

	// globex has no router cap: its long statement runs to the end while
	// acme's is cancelled.
	otherDone := make(chan error, 1)
	go func() {
		_, err := other.Exec(testCtx(t, 15*time.Second), "select pg_sleep(1.5)")
		otherDone <- err
	}()

	mustExec(t, conn, "SET statement_timeout = 0")
	start := time.Now()
	_, err := conn.Exec(testCtx(t, 15*time.Second), "select pg_sleep(5)")
	took := time.Since(start)
	pe := wantCode(t, err, "57014")
	if !strings.Contains(pe.Message, "max_statement_timeout (1s)") {
		t.Errorf("message %q does not name the limit", pe.Message)
	}
	if took < 900*time.Millisecond || took > 3*time.Second {
		t.Errorf("cancelled after %s, want about 1s", took)
	}
	// The session survives and keeps its own SET (it is pinned).
	if got := queryString(t, conn, "show statement_timeout"); got != "0" {
		t.Errorf("statement_timeout after the cancel = %q", got)
	}
	if err := <-otherDone; err != nil {
		t.Errorf("globex statement: %v", err)
	}
	if n := r.counter("acme", "cancel", "statement_timeout"); n != 1 {
		t.Errorf("acme statement_timeout cancels = %d, want 1", n)
	}
	if n := r.counter("globex", "cancel", "statement_timeout"); n != 0 {
		t.Errorf("globex statement_timeout cancels = %d, want 0", n)
	}

	// A client's own cancel still reports PostgreSQL's message.
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = conn.PgConn().CancelRequest(testCtx(t, 5*time.Second))
	}()
	_, err = conn.Exec(testCtx(t, 15*time.Second), "select pg_sleep(0.8)")
	if pe := wantCode(t, err, "57014"); strings.Contains(pe.Message, "pgbridge") {
		t.Errorf("client cancel reported as %q", pe.Message)
	}
	if n := queryInt(t, conn, "select 7"); n != 7 {
		t.Errorf("after client cancel: %d", n)
	}
	if n := r.counter("acme", "cancel", "client"); n != 1 {
		t.Errorf("client cancels = %d, want 1", n)
	}
}

// A Flush is no request: a client idle in its transaction that sends one
// is still idle, and idle_in_transaction_timeout still ends it.
func TestIdleInTransactionTimeoutAfterAFlush(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"idle_in_transaction_timeout": "500ms"}))
	hc := hijackDSN(t, r.dsn("acme"))
	if _, codes := simpleQuery(t, hc, "begin"); len(codes) > 0 {
		t.Fatal(codes)
	}
	sendAll(t, hc, &pgproto3.Flush{})
	wantFatalClose(t, hc, "25P03")
}

// A client that runs a statement with Execute and Flush, gets its answer
// and then thinks, without a Sync, is idle in a transaction (an open
// block, or the request's implicit one, which holds its locks): PostgreSQL
// sent no ReadyForQuery, so its own timeouts do not see it, but the
// router's idle_in_transaction_timeout does.
func TestIdleInTransactionTimeoutAfterExecuteAndFlush(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"idle_in_transaction_timeout": "300ms"}))
	for _, block := range []bool{true, false} {
		hc := hijackDSN(t, r.dsn("acme"))
		if block {
			if _, codes := simpleQuery(t, hc, "begin"); len(codes) > 0 {
				t.Fatal(codes)
			}
		}
		sendAll(t, hc, &pgproto3.Parse{Query: "select 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		receiveUntil[*pgproto3.CommandComplete](t, hc)
		wantFatalClose(t, hc, "25P03")
	}
}

// Not idle: a cursor fetched in steps (Execute with a row limit, Flush)
// more often than the limit, for longer than it; and a Parse written
// after the last Execute that waits on a lock (the backend's turn).
func TestExecuteAndFlushThatIsNotIdle(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"idle_in_transaction_timeout": "400ms"}))
	setup := r.connect(t, "acme")
	scratchTable(t, setup, "acme", "flush_lock", "id int")
	hc := hijackDSN(t, r.dsn("acme"))
	sendAll(t, hc, &pgproto3.Parse{Query: "select generate_series(1, 100)"}, &pgproto3.Bind{}, &pgproto3.Flush{})
	receiveUntil[*pgproto3.BindComplete](t, hc)
	for i := range 8 {
		sendAll(t, hc, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Flush{})
		if rows, codes := receiveUntil[*pgproto3.PortalSuspended](t, hc); len(codes) > 0 || len(rows) != 1 || rows[0] != strconv.Itoa(i+1) {
			t.Fatalf("fetch %d: rows %v errors %v", i, rows, codes)
		}
		time.Sleep(150 * time.Millisecond)
	}
	unlock := lockTable(t, tenants["acme"].Database, "flush_lock")
	sendAll(t, hc, &pgproto3.Parse{Name: "s", Query: "select count(*) from flush_lock"}, &pgproto3.Flush{})
	time.Sleep(time.Second)
	unlock()
	receiveUntil[*pgproto3.ParseComplete](t, hc)
	sendAll(t, hc, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("sync: %v", codes)
	}
	if n := r.counter("acme", "close", "idle_in_transaction"); n != 0 {
		t.Errorf("idle_in_transaction closes = %d, want 0", n)
	}
}

// A client idle in the middle of a request (Execute, Flush, answered, no
// Sync) stops counting against max_active_transactions like one idle in a
// transaction block: it must not keep every other tenant out.
func TestExecuteAndFlushIdleStopsCounting(t *testing.T) {
	r := startRouter(t, cfgMap{"backend": cfgMap{"max_active_transactions": 1}},
		tenantOverride("globex", cfgMap{"pool_wait_timeout": "2s"}))
	hc := hijackDSN(t, r.dsn("acme"))
	sendAll(t, hc, &pgproto3.Parse{Query: "select 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	receiveUntil[*pgproto3.CommandComplete](t, hc)
	g := r.connect(t, "globex")
	if _, err := g.Exec(testCtx(t, 10*time.Second), "select 1"); err != nil {
		t.Fatalf("globex while an idle acme client holds the only admission: %v", err)
	}
	// acme's client goes on: its next statement counts again at once.
	sendAll(t, hc, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	if rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 || len(rows) != 1 {
		t.Fatalf("acme after its pause: rows %v errors %v", rows, codes)
	}
}

// A COPY from the client that waits for data the client does not send is
// idle in its transaction too (PostgreSQL waits in the COPY, not idle to
// its own timeouts); one fed more often than the limit, for longer than
// it, is not.
func TestIdleInTransactionTimeoutInAStalledCopy(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"idle_in_transaction_timeout": "400ms"}))
	setup := r.connect(t, "acme")
	scratchTable(t, setup, "acme", "copy_stall", "id int")
	fed := hijackDSN(t, r.dsn("acme"))
	startCopy(t, fed, "copy copy_stall from stdin")
	for i := range 8 {
		sendAll(t, fed, &pgproto3.CopyData{Data: []byte(strconv.Itoa(i) + "\n")})
		time.Sleep(150 * time.Millisecond)
	}
	sendAll(t, fed, &pgproto3.CopyDone{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, fed); len(codes) > 0 {
		t.Fatalf("fed COPY: %v", codes)
	}
	if n := superInt(t, tenants["acme"].Database, "select count(*) from copy_stall"); n != 8 {
		t.Fatalf("rows %d, want 8", n)
	}
	stalled := hijackDSN(t, r.dsn("acme"))
	startCopy(t, stalled, "copy copy_stall from stdin")
	wantFatalClose(t, stalled, "25P03")
}

func TestIdleInTransactionTimeoutClosesAndDiscards(t *testing.T) {
	const table = "guard_iit"
	r := startRouter(t, tenantOverride("acme", cfgMap{"idle_in_transaction_timeout": "300ms"}))
	setup := r.connect(t, "acme")
	mustExec(t, setup, "create table if not exists "+table+" (v int)")
	mustExec(t, setup, "truncate "+table)

	conn := r.connect(t, "acme")
	busy := r.connect(t, "acme")
	other := r.connect(t, "globex")

	mustExec(t, other, "begin")
	mustExec(t, conn, "begin")
	mustExec(t, conn, "insert into "+table+" values (1)")

	// Another acme session keeps working (each of its transactions is
	// short), while conn sits idle in its transaction.
	eventually(t, 5*time.Second, "the idle transaction to be closed", func() bool {
		if n := queryInt(t, busy, "select 1"); n != 1 {
			t.Fatalf("busy session: %d", n)
		}
		return r.counter("acme", "close", "idle_in_transaction") == 1
	})
	_, err := conn.Exec(testCtx(t, 5*time.Second), "commit")
	pe := wantCode(t, err, "25P03")
	if pe.Severity != "FATAL" || !strings.Contains(pe.Message, "idle_in_transaction_timeout (300ms)") {
		t.Errorf("error = %s %q", pe.Severity, pe.Message)
	}
	// The transaction was not committed, and no backend is left in it.
	if n := queryInt(t, setup, "select count(*) from "+table); n != 0 {
		t.Errorf("rows after the closed transaction = %d, want 0", n)
	}
	eventually(t, 5*time.Second, "no acme backend idle in transaction", func() bool {
		return superInt(t, "postgres", "select count(*) from pg_stat_activity where datname = $1 and state like 'idle in transaction%'",
			tenants["acme"].Database) == 0
	})
	// globex has no limit: its transaction, idle for longer, still commits.
	mustExec(t, other, "commit")
	if n := r.counter("globex", "close", "idle_in_transaction"); n != 0 {
		t.Errorf("globex closes = %d", n)
	}
}

func TestClientIdleTimeout(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"client_idle_timeout": "300ms"}))
	idle := r.connect(t, "acme")
	active := r.connect(t, "acme")
	other := r.connect(t, "globex")

	eventually(t, 5*time.Second, "the idle session to be closed", func() bool {
		if n := queryInt(t, active, "select 1"); n != 1 {
			t.Fatalf("active session: %d", n)
		}
		return r.counter("acme", "close", "client_idle") >= 1
	})
	_, err := idle.Exec(testCtx(t, 5*time.Second), "select 1")
	pe := wantCode(t, err, "57P05")
	if !strings.Contains(pe.Message, "client_idle_timeout") {
		t.Errorf("message %q", pe.Message)
	}
	if n := r.counter("acme", "close", "client_idle"); n != 1 {
		t.Errorf("acme client_idle closes = %d, want exactly 1 (the active session must stay)", n)
	}
	if n := queryInt(t, other, "select 2"); n != 2 {
		t.Errorf("globex after %s idle: %d", 300*time.Millisecond, n)
	}
}

// A session waiting for a backend is not idle: client_idle_timeout does
// not end it during the wait, however long it was idle before.
func TestClientIdleTimeoutSparesWaiting(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{
		"client_idle_timeout": "1s", "pool_size": 1, "pool_wait_timeout": "10s"}))
	holder := r.connect(t, "acme")
	waiter := r.connect(t, "acme")
	mustExec(t, holder, "begin")
	mustExec(t, holder, "select 1")    // holds the tenant's only backend
	time.Sleep(700 * time.Millisecond) // the waiter idles most of its limit
	done := runAsync(waiter, "select 1")
	eventually(t, 5*time.Second, "the query waits for the backend", func() bool {
		return r.pool.Stats()["acme"].Waiting == 1
	})
	time.Sleep(1500 * time.Millisecond) // past client_idle_timeout since its last answer
	mustExec(t, holder, "commit")
	if err := <-done; err != nil {
		t.Fatalf("the waiting query: %v", err)
	}
	if n := r.counter("acme", "close", "client_idle"); n != 0 {
		t.Errorf("acme client_idle closes = %d, want 0", n)
	}
}

func TestQueryRateLimit(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"query_rate": 1, "query_burst": 3, "pool_wait_timeout": "100ms"}))
	conn := r.connect(t, "acme")
	other := r.connect(t, "globex")

	var refused *pgconn.PgError
	for i := 0; i < 10 && refused == nil; i++ {
		_, err := conn.Exec(testCtx(t, 5*time.Second), "select 1")
		if err != nil {
			refused = wantCode(t, err, "53400")
		}
	}
	if refused == nil {
		t.Fatal("10 queries at once passed a 1/s limit with burst 3")
	}
	if refused.Severity != "ERROR" || !strings.Contains(refused.Message, "query_rate=1/s") {
		t.Errorf("refusal = %s %q", refused.Severity, refused.Message)
	}
	// Another tenant is not limited.
	for i := 0; i < 50; i++ {
		if n := queryInt(t, other, "select $1::int", i); n != int64(i) {
			t.Fatalf("globex query %d = %d", i, n)
		}
	}
	// The session is still usable once a token is back.
	eventually(t, 5*time.Second, "a token", func() bool {
		_, err := conn.Exec(testCtx(t, 5*time.Second), "select 1")
		return err == nil
	})

	if r.counter("acme", "reject", "rate_limit") < 1 || r.counter("globex", "reject", "rate_limit") != 0 {
		t.Errorf("rate_limit rejections acme=%d globex=%d", r.counter("acme", "reject", "rate_limit"), r.counter("globex", "reject", "rate_limit"))
	}
}

// A pipeline pays a token for every request in it, however many one
// write carries: 200 queries in one batch do not pass a 1/s limit.
func TestQueryRatePipelinePaysPerRequest(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"query_rate": 1, "query_burst": 2, "pool_wait_timeout": "100ms"}))
	hc := hijackDSN(t, r.dsn("acme"))
	const n = 200
	msgs := make([]pgproto3.FrontendMessage, n)
	for i := range msgs {
		msgs[i] = &pgproto3.Query{String: "select 1"}
	}
	sendAll(t, hc, msgs...)
	ran, refused := 0, 0
	for range n {
		rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc)
		switch {
		case len(codes) == 0 && len(rows) == 1:
			ran++
		case len(codes) == 1 && codes[0] == "53400":
			refused++
		default:
			t.Fatalf("rows %v, errors %v", rows, codes)
		}
	}
	if ran > 2 || refused < n-2 {
		t.Fatalf("%d of %d pipelined queries ran, %d refused, under query_rate=1/s, query_burst=2", ran, n, refused)
	}
}

// A refused batch that ends inside a request (Parse and Bind after a
// Query, the Sync to come) refuses that request too, and the rest of it is
// skipped up to its Sync, as PostgreSQL skips after an error.
func TestQueryRateRefusesAnUnfinishedRequest(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"query_rate": 0.5, "query_burst": 1, "pool_wait_timeout": "100ms"}))
	hc := hijackDSN(t, r.dsn("acme"))
	if _, codes := simpleQuery(t, hc, "select 1"); len(codes) > 0 { // the token
		t.Fatal(codes)
	}
	sendAll(t, hc, &pgproto3.Query{String: "select 1"}, &pgproto3.Parse{Query: "select 2"}, &pgproto3.Bind{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "53400" {
		t.Fatalf("the Query: errors %v", codes)
	}
	if _, codes := receiveUntil[*pgproto3.ErrorResponse](t, hc); len(codes) != 1 || codes[0] != "53400" {
		t.Fatalf("the unfinished request: errors %v", codes)
	}
	sendAll(t, hc, &pgproto3.Execute{}, &pgproto3.Sync{})
	if rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(rows) > 0 || len(codes) > 0 {
		t.Fatalf("the rest of the refused request ran: rows %v errors %v", rows, codes)
	}
	time.Sleep(2100 * time.Millisecond) // a token
	if rows, codes := simpleQuery(t, hc, "select 3"); len(codes) > 0 || len(rows) != 1 || rows[0] != "3" {
		t.Fatalf("after: rows %v errors %v", rows, codes)
	}
}

// Inside a transaction the refusal comes from the backend, so the
// transaction is failed like after any error; ROLLBACK is never refused.
func TestQueryRateLimitInsideTransaction(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			r := startRouter(t, tenantOverride("acme", cfgMap{"pool_mode": mode, "query_rate": 0.5, "query_burst": 3, "pool_wait_timeout": "100ms"}))
			conn := r.connect(t, "acme")
			tx, err := conn.Begin(testCtx(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var refused *pgconn.PgError
			for i := 0; i < 10 && refused == nil; i++ {
				if _, err := tx.Exec(testCtx(t, 5*time.Second), "select $1::int", i); err != nil {
					refused = wantCode(t, err, "53400")
				}
			}
			if refused == nil {
				t.Fatal("no refusal inside the transaction")
			}
			if !strings.Contains(refused.Message, "query_rate") {
				t.Errorf("message %q", refused.Message)
			}
			if err := tx.Rollback(testCtx(t, 5*time.Second)); err != nil {
				t.Fatalf("rollback after the refusal: %v", err)
			}
			if st := conn.PgConn().TxStatus(); st != 'I' {
				t.Errorf("transaction status after rollback = %c", st)
			}
		})
	}
}

func TestConnectionRate(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"connection_rate": 0.5}))
	r.connect(t, "acme")
	_, err := connectCfg(t, connConfig(t, r.dsn("acme")))
	pe := wantCode(t, err, "53400")
	if pe.Severity != "FATAL" || !strings.Contains(pe.Message, "connection_rate") {
		t.Errorf("refusal = %s %q", pe.Severity, pe.Message)
	}
	for range 5 { // globex logs in as often as it likes
		r.connect(t, "globex")
	}
	r.eventuallyLogsIn(t, "acme")
	if n := r.counter("acme", "reject", "connection_rate"); n < 1 {
		t.Errorf("connection_rate rejections = %d", n)
	}
}

// dialFrom makes pgx connect from a given loopback source address.
func dialFrom(src string) pgconn.DialFunc {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return d.DialContext
}

func TestFailedLoginsAreThrottledPerAddressAndUser(t *testing.T) {
	r := startRouter(t)
	bad := connConfig(t, r.dsn("acme", "password=wrong"))
	for i := 0; i < 5; i++ {
		_, err := connectCfg(t, bad)
		wantCode(t, err, "28P01")
	}
	// Now even the right password waits, from this address for this user.
	_, err := connectCfg(t, connConfig(t, r.dsn("acme")))
	pe := wantCode(t, err, "53400")
	if !strings.Contains(pe.Message, "too many failed login attempts") {
		t.Errorf("message %q", pe.Message)
	}
	// Unknown users are throttled the same way (nothing tells them apart).
	ghost := connConfig(t, r.dsn("acme", "user=ghost"))
	for i := 0; i < 5; i++ {
		_, err := connectCfg(t, ghost)
		wantCode(t, err, "28P01")
	}
	_, err = connectCfg(t, ghost)
	wantCode(t, err, "53400")

	// Another user from the same address, and the same user from another
	// address, are not affected.
	r.connect(t, "globex")
	cc := connConfig(t, r.dsn("acme"))
	cc.DialFunc = dialFrom("127.0.0.2")
	if _, err := connectCfg(t, cc); err != nil {
		t.Fatalf("acme from 127.0.0.2: %v", err)
	}
	if n := r.counter("acme", "reject", "login_throttled"); n != 1 {
		t.Errorf("acme login_throttled = %d, want 1", n)
	}
	if n := r.counter("acme", "reject", "auth_failed"); n != 5 {
		t.Errorf("acme auth_failed = %d, want 5", n)
	}
}

func TestMaxMessageSize(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"max_message_size": 4096}))
	conn := r.connect(t, "acme")
	other := r.connect(t, "acme")
	globex := r.connect(t, "globex")
	big := "select '" + strings.Repeat("x", 8000) + "'::text"

	_, err := conn.Exec(testCtx(t, 5*time.Second), big)
	pe := wantCode(t, err, "54000")
	if pe.Severity != "FATAL" || !strings.Contains(pe.Message, "max_message_size (4096 bytes)") {
		t.Errorf("refusal = %s %q", pe.Severity, pe.Message)
	}
	if n := queryInt(t, other, "select length($1::text)", strings.Repeat("y", 3000)); n != 3000 {
		t.Errorf("acme under the limit: %d", n)
	}
	if n := queryInt(t, globex, "select length(("+strings.TrimPrefix(big, "select ")+"))"); n != 8000 {
		t.Errorf("globex with the default limit: %d", n)
	}
	if n := r.counter("acme", "reject", "message_too_large"); n != 1 {
		t.Errorf("message_too_large = %d", n)
	}
}

// The noisy neighbour of issue 4: tenant A floods a small shared budget,
// tenant B's few clients keep low latency and see no errors.
func TestNoisyNeighbour(t *testing.T) {
	r := startRouter(t,
		cfgMap{"backend": cfgMap{"max_connections": 8}},
		tenantOverride("acme", cfgMap{"pool_size": 5, "max_client_connections": 100, "pool_wait_timeout": "2s"}),
		tenantOverride("globex", cfgMap{"pool_size": 5}),
	)
	const noisy, quiet = 64, 4
	ctx, stop := context.WithTimeout(context.Background(), 6*time.Second)
	defer stop()

	var mu sync.Mutex
	var aErrs []error
	var bLat []time.Duration
	var bErrs []error
	var wg sync.WaitGroup
	connectAll := func(tenant string, n int) []*pgx.Conn {
		conns := make([]*pgx.Conn, n)
		for i := range conns {
			conns[i] = r.connect(t, tenant)
		}
		return conns
	}
	aConns, bConns := connectAll("acme", noisy), connectAll("globex", quiet)
	for _, c := range aConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := c.Exec(ctx, "select pg_sleep(0.05)"); err != nil && ctx.Err() == nil {
					mu.Lock()
					aErrs = append(aErrs, err)
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // let the flood fill the budget first
	for _, c := range bConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				_, err := c.Exec(ctx, "select 1")
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				if err != nil {
					bErrs = append(bErrs, err)
				} else {
					bLat = append(bLat, time.Since(t0))
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()

	if len(bErrs) > 0 {
		t.Errorf("quiet tenant got %d errors, first: %v", len(bErrs), bErrs[0])
	}
	if len(bLat) < 100 {
		t.Fatalf("quiet tenant ran only %d queries", len(bLat))
	}
	sort.Slice(bLat, func(i, j int) bool { return bLat[i] < bLat[j] })
	p50, p99 := bLat[len(bLat)/2], bLat[len(bLat)*99/100]
	t.Logf("quiet tenant: %d queries, p50 %s, p99 %s; noisy tenant errors: %d", len(bLat), p50, p99, len(aErrs))
	if p99 > 50*time.Millisecond {
		t.Errorf("quiet tenant p99 = %s, want under 50ms", p99)
	}
	for _, err := range aErrs {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "53300" {
			t.Errorf("noisy tenant error other than a pool wait timeout: %v", err)
			break
		}
	}
	if open, limit := r.pool.Budget(); open > limit {
		t.Errorf("budget overrun: %d open of %d", open, limit)
	}
	_ = fmt.Sprint
}

// Under a tight shared budget, a quiet tenant that queries every 100 ms
// keeps its connection while a noisy tenant floods: the slot is not handed
// to the noisy tenant's queue at every release only to be taken back (one
// dial each way per quiet query) at the quiet tenant's next query.
func TestTightBudgetDoesNotChurnDials(t *testing.T) {
	r := startRouter(t,
		cfgMap{"backend": cfgMap{"max_connections": 4}, "defaults": cfgMap{"pool_size": 4}},
		tenantOverride("acme", cfgMap{"pool_wait_timeout": "5s"}),
	)
	noisy := make([]*pgx.Conn, 12)
	for i := range noisy {
		noisy[i] = r.connect(t, "acme")
	}
	quiet := r.connect(t, "globex")
	mustExec(t, quiet, "select 1")
	ctx, stop := context.WithTimeout(context.Background(), 4*time.Second)
	defer stop()
	var wg sync.WaitGroup
	var noisyQueries atomic.Int64
	for _, c := range noisy {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := c.Exec(ctx, "select 1"); err == nil {
					noisyQueries.Add(1)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the flood holds the rest of the budget
	dials := func() uint64 { return r.pool.BackendStats().Connects.Get("ok") }
	before := dials()
	quietQueries := 0
	for ctx.Err() == nil {
		if _, err := quiet.Exec(ctx, "select 1"); err != nil {
			if ctx.Err() == nil {
				t.Fatalf("quiet tenant: %v", err)
			}
			break
		}
		quietQueries++
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	got := dials() - before
	t.Logf("quiet tenant: %d queries; noisy tenant: %d queries; backend dials meanwhile: %d", quietQueries, noisyQueries.Load(), got)
	if quietQueries < 10 {
		t.Fatalf("quiet tenant ran only %d queries", quietQueries)
	}
	if got > 4 {
		t.Errorf("%d backend dials while the quiet tenant ran %d queries: its connection changed hands", got, quietQueries)
	}
}

// An idle client gives its read buffer back (10,000 idle clients must not
// hold 10,000 buffers) and is served as before when it speaks again, in
// either pool mode, with a message bigger than the buffer too.
func TestIdleSessionsParkWithoutABuffer(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"pool_mode": "session"}))
	acme := r.connect(t, "acme")
	globex := r.connect(t, "globex")
	mustExec(t, acme, "select 1")
	mustExec(t, globex, "select 1")
	eventually(t, 5*time.Second, "the idle transaction-mode session to park", func() bool {
		return r.srv.ParkedSessions() == 1 // session mode keeps its backend: not parked
	})
	big := strings.Repeat("x", 20000)
	if n := queryInt(t, acme, "select length($1::text)", big); n != 20000 {
		t.Errorf("after parking: %d", n)
	}
	if r.srv.ParkedSessions() != 0 {
		t.Error("a session that spoke is still parked")
	}
	eventually(t, 5*time.Second, "the session to park again", func() bool { return r.srv.ParkedSessions() == 1 })
	if n := queryInt(t, acme, "select 2"); n != 2 {
		t.Errorf("after parking twice: %d", n)
	}
	if n := queryInt(t, globex, "select 3"); n != 3 {
		t.Errorf("session mode: %d", n)
	}
	// A parked client that leaves is cleaned up like any other.
	closeConn(acme)
	eventually(t, 5*time.Second, "the parked session to end", func() bool { return r.srv.ParkedSessions() == 0 })
}

// Parked sessions hold no goroutine (Linux), and the router can still end them:
// KILL_CLIENT on the admin console, client_idle_timeout, and shutdown each
// reach a parked client with its error and leave nothing behind.
func TestParkedSessionsHoldNoGoroutineAndCanBeEnded(t *testing.T) {
	r := startRouter(t, tenantOverride("globex", cfgMap{"client_idle_timeout": "3s"}))
	const n = 40
	base := runtime.NumGoroutine()
	var conns []*pgx.Conn
	for i := range n {
		c := r.connect(t, "acme", fmt.Sprintf("application_name=idle%d", i))
		mustExec(t, c, "select 1")
		conns = append(conns, c)
	}
	busy := runtime.NumGoroutine()
	eventually(t, 5*time.Second, "the idle sessions to park", func() bool { return r.srv.ParkedSessions() == n })
	// Each session had a goroutine in the router (and pgx keeps none per
	// connection); parked by the epoll parker (Linux), the router's are
	// gone. Elsewhere a parked session keeps its goroutine by design.
	if parked := runtime.NumGoroutine(); runtime.GOOS == "linux" && parked > base+n/4 {
		t.Errorf("goroutines: %d before the clients, %d connected, %d parked; want the sessions' goroutines gone", base, busy, parked)
	}
	// A parked client that speaks is served.
	if v := queryInt(t, conns[0], "select 7"); v != 7 {
		t.Errorf("after parking: %d", v)
	}

	adm := r.admin(t)
	row := rowFor(adminRows(t, adm, "SHOW CLIENTS"), "application_name", "idle1")
	if row == nil {
		t.Fatal("idle1 not in SHOW CLIENTS")
	}
	mustExec(t, adm, "KILL_CLIENT "+row["id"])
	_, err := conns[1].Exec(testCtx(t, 5*time.Second), "select 1")
	wantCode(t, err, "57P01")

	// client_idle_timeout (3 s) fires after the session parked (1 s).
	g := r.connect(t, "globex")
	mustExec(t, g, "select 1")
	eventually(t, 5*time.Second, "the globex session to park", func() bool { return r.srv.ParkedSessions() == n-1 })
	time.Sleep(3500 * time.Millisecond)
	_, err = g.Exec(testCtx(t, 5*time.Second), "select 1")
	wantCode(t, err, "57P05")

	// Shutdown ends every parked session with 57P01 and returns.
	eventually(t, 5*time.Second, "the sessions to park again", func() bool { return r.srv.ParkedSessions() == n-1 })
	if err := r.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for i, c := range conns {
		if i == 1 {
			continue
		}
		_, err := c.Exec(testCtx(t, 5*time.Second), "select 1")
		if err == nil {
			t.Fatalf("client %d still served after shutdown", i)
		}
	}
	if p := r.srv.ParkedSessions(); p != 0 {
		t.Errorf("%d sessions still parked after shutdown", p)
	}
}

// max_statement_timeout holds when the router's cancel does not end the
// request: a statement that catches the cancel, or a client that holds its
// backend without a Sync. The session is ended (FATAL 57014) a grace period
// after the cancel. A cursor fetched in steps without Sync, each step well
// within the limit, is left alone however long it takes in all.
func TestMaxStatementTimeoutCannotBeCaught(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"max_statement_timeout": "500ms"}))
	t.Run("statement catches the cancel", func(t *testing.T) {
		conn := r.connect(t, "acme")
		// A backend dialed for the statement counts towards its time: under
		// load the cancel could land before the block that catches it.
		mustExec(t, conn, "select 1")
		start := time.Now()
		// (The backend's own statement_timeout and the router's cancel may
		// both come, close together: the outer block catches the second.)
		_, err := conn.Exec(testCtx(t, 20*time.Second), `do $$ begin
			begin perform pg_sleep(5); exception when query_canceled then perform pg_sleep(8); end;
			exception when query_canceled then perform pg_sleep(8); end $$`)
		if pe := wantCode(t, err, "57014"); pe.Severity != "FATAL" || !strings.Contains(pe.Message, "max_statement_timeout (500ms)") {
			t.Fatalf("%s %q, want FATAL naming the limit", pe.Severity, pe.Message)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("ended after %s", took)
		}
	})
	t.Run("no Sync", func(t *testing.T) {
		hc := hijackDSN(t, r.dsn("acme"))
		simpleQuery(t, hc, "begin")
		sendAll(t, hc, &pgproto3.Parse{Query: "select 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		receiveUntil[*pgproto3.CommandComplete](t, hc) // done, but the request is not over
		wantFatalClose(t, hc, "57014")
	})
	t.Run("statement catches the cancel and keeps talking", func(t *testing.T) {
		conn := r.connect(t, "acme")
		mustExec(t, conn, "select 1") // (see above)
		start := time.Now()
		// Every cancel caught (the router's and the backend's own
		// statement_timeout may both come, close together: the second
		// may land in the handler of the first, hence the outer block), a
		// notice every 100 ms.
		_, err := conn.Exec(testCtx(t, 30*time.Second), `do $$ begin
			for i in 1..200 loop
				begin
					begin perform pg_sleep(0.1); raise notice 'still here %', i;
					exception when query_canceled then raise notice 'caught';
					end;
				exception when query_canceled then raise notice 'caught in the handler';
				end;
			end loop; end $$`)
		if pe := wantCode(t, err, "57014"); pe.Severity != "FATAL" || !strings.Contains(pe.Message, "max_statement_timeout (500ms)") {
			t.Fatalf("%s %q, want FATAL naming the limit", pe.Severity, pe.Message)
		}
		if took := time.Since(start); took > 15*time.Second { // 20 s of notices otherwise
			t.Errorf("ended after %s", took)
		}
	})
	if n := r.counter("acme", "close", "statement_timeout"); n != 3 {
		t.Errorf("statement_timeout closes = %d, want 3", n)
	}
	t.Run("cursor fetched in steps", func(t *testing.T) {
		hc := hijackDSN(t, r.dsn("acme"))
		simpleQuery(t, hc, "begin")
		sendAll(t, hc, &pgproto3.Parse{Query: "select g from generate_series(1, 10) g"}, &pgproto3.Bind{})
		for i := 1; i <= 10; i++ { // 3 s in all
			sendAll(t, hc, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Flush{})
			rows, codes := receiveUntil[*pgproto3.PortalSuspended](t, hc)
			if len(codes) > 0 || len(rows) != 1 || rows[0] != strconv.Itoa(i) {
				t.Fatalf("fetch %d: rows %v errors %v", i, rows, codes)
			}
			time.Sleep(300 * time.Millisecond)
		}
		sendAll(t, hc, &pgproto3.Sync{}, &pgproto3.Query{String: "commit"})
		receiveUntil[*pgproto3.ReadyForQuery](t, hc)
		if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
			t.Fatalf("commit: %v", codes)
		}
	})
}

// Statements run without a Sync (Bind, Execute, Flush, as a client that
// fetches in steps sends them) pay a query_rate token each: a loop of them
// must not run unmetered inside one request. The Sync that ends their
// request pays none.
func TestQueryRateChargesExecutesWithoutSync(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"query_rate": 4, "query_burst": 1, "pool_wait_timeout": "100ms"}))
	hc := hijackDSN(t, r.dsn("acme"))
	sendAll(t, hc, &pgproto3.Parse{Query: "select 1"}, &pgproto3.Flush{})
	receiveUntil[*pgproto3.ParseComplete](t, hc)
	start := time.Now()
	const n = 8
	for i := range n {
		sendAll(t, hc, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		if _, codes := receiveUntil[*pgproto3.CommandComplete](t, hc); len(codes) > 0 {
			t.Fatalf("execute %d: %v", i, codes)
		}
	}
	// n statements at 4/s with a burst of 1: at least (n-1)/4 s.
	if d := time.Since(start); d < (n-1)*time.Second/4 {
		t.Fatalf("%d statements ran in %s under query_rate=4/s, query_burst=1", n, d)
	}
	sendAll(t, hc, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("sync: %v", codes)
	}
}

// query_rate never refuses part of a request: a Sync that ends a request
// begun by an earlier batch (here after a Parse error, when the backend
// skips everything up to a Sync), or a batch carrying COPY data, waits for
// its token instead. A Query put in their place would be skipped (the
// client would wait forever) or break the COPY.
func TestQueryRateNeverRefusesPartOfARequest(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"query_rate": 2, "query_burst": 1, "pool_wait_timeout": "100ms"}))
	setup := r.connect(t, "acme")
	scratchTable(t, setup, "acme", "rate_copy", "id int")

	hc := hijackDSN(t, r.dsn("acme"))
	time.Sleep(600 * time.Millisecond) // a token for BEGIN
	if _, codes := simpleQuery(t, hc, "begin"); len(codes) > 0 {
		t.Fatalf("begin: %v", codes)
	}
	sendAll(t, hc, &pgproto3.Parse{Query: "selec 1"}, &pgproto3.Flush{})
	if _, codes := receiveUntil[*pgproto3.ErrorResponse](t, hc); codes[0] != "42601" {
		t.Fatalf("parse error %v", codes)
	}
	sendAll(t, hc, &pgproto3.Sync{}) // no token left this instant
	receiveUntil[*pgproto3.ReadyForQuery](t, hc)
	// ROLLBACK ends a transaction: never refused.
	if _, codes := simpleQuery(t, hc, "rollback"); len(codes) > 0 {
		t.Fatalf("rollback: %v", codes)
	}

	time.Sleep(600 * time.Millisecond) // a token for the COPY itself
	sendAll(t, hc, &pgproto3.Parse{Query: "copy rate_copy from stdin"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	receiveUntil[*pgproto3.CopyInResponse](t, hc)
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("COPY: errors %v", codes)
	}
	if n := superInt(t, tenants["acme"].Database, "select count(*) from rate_copy"); n != 1 {
		t.Fatalf("rows %d", n)
	}
}

// Flush messages do not restart a running statement's time, and an answer
// that waits on a slow client is not a statement that ignored its cancel.
func TestMaxStatementTimeoutFlushAndSlowClient(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"max_statement_timeout": "1s"}))
	// Neither Flushes nor more Executes (which the backend reads only
	// once the statement is done) restart the running statement's clock.
	for name, more := range map[string][]pgproto3.FrontendMessage{
		"flushes":  {&pgproto3.Flush{}},
		"executes": {&pgproto3.Execute{}, &pgproto3.Flush{}},
	} {
		t.Run(name, func(t *testing.T) {
			hc := hijackDSN(t, r.dsn("acme", "options='-c statement_timeout=0'"))
			start := time.Now()
			sendAll(t, hc, &pgproto3.Parse{Query: "select pg_sleep(6)"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
			got := make(chan string, 1)
			go func() { // no t.Fatal off the test goroutine
				_ = hc.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					m, err := hc.Frontend.Receive()
					if err != nil {
						got <- err.Error()
						return
					}
					if e, ok := m.(*pgproto3.ErrorResponse); ok {
						got <- e.Code
						return
					}
				}
			}()
			tick := time.NewTicker(300 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case code := <-got:
					if code != "57014" || time.Since(start) > 4*time.Second {
						t.Fatalf("got %q after %s, want 57014 soon after 1s", code, time.Since(start))
					}
					return
				case <-tick.C:
					sendAll(t, hc, more...)
				}
			}
		})
	}
	t.Run("slow client", func(t *testing.T) {
		// A client still reading its answer makes progress, however long
		// the whole takes.
		hc := hijackSlowReader(t, r.dsn("acme"))
		start := time.Now()
		sendAll(t, hc, &pgproto3.Query{String: "select repeat('x', 1000) from generate_series(1, 6000)"})
		_ = hc.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		rows := 0
		for {
			m, err := hc.Frontend.Receive()
			if err != nil {
				t.Fatalf("after %d rows: %v", rows, err)
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
			if _, ok := m.(*pgproto3.DataRow); ok {
				if rows++; rows%100 == 0 {
					time.Sleep(40 * time.Millisecond) // about 2.4 s in all
				}
			}
		}
		if rows != 6000 || time.Since(start) < 2*time.Second {
			t.Fatalf("%d rows in %s, want 6000 in more than 2s", rows, time.Since(start))
		}
	})
	if n := r.counter("acme", "close", "statement_timeout"); n != 0 {
		t.Errorf("statement_timeout closes = %d, want 0", n)
	}
}

// A client that stops reading its answer cannot keep a statement past
// max_statement_timeout: it would hold its backend, and its slot under
// backend.max_active_transactions, for as long as it likes, locking other
// tenants out.
func TestMaxStatementTimeoutClientStopsReading(t *testing.T) {
	r := startRouter(t,
		cfgMap{"backend": cfgMap{"max_active_transactions": 1}},
		tenantOverride("acme", cfgMap{"max_statement_timeout": "1s"}),
		tenantOverride("globex", cfgMap{"pool_wait_timeout": "10s"}),
	)
	hc := hijackSlowReader(t, r.dsn("acme"))
	sendAll(t, hc, &pgproto3.Query{String: "select repeat('x', 1000) from generate_series(1, 20000)"})
	g := r.connect(t, "globex")
	if _, err := g.Exec(testCtx(t, 15*time.Second), "select 1"); err != nil {
		t.Fatalf("globex while acme's client does not read: %v", err)
	}
	eventually(t, 10*time.Second, "the close", func() bool { return r.counter("acme", "close", "statement_timeout") == 1 })
}

// COPY data sent after its COPY failed takes no query token: refusing it
// would leave the session skipping to a Sync a simple-protocol client never
// sends.
func TestQueryRateIgnoresStrayCopyData(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"query_rate": 1, "query_burst": 1, "pool_wait_timeout": "100ms"}))
	setup := r.connect(t, "acme")
	scratchTable(t, setup, "acme", "rate_stray", "id int")
	hc := hijackDSN(t, r.dsn("acme"))
	time.Sleep(1100 * time.Millisecond) // a token for the COPY
	startCopy(t, hc, "copy rate_stray from stdin")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("bad\n")})
	receiveUntil[*pgproto3.ReadyForQuery](t, hc)
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{})
	time.Sleep(1100 * time.Millisecond) // a token for the next query
	wantAfter(t, hc)
}

// A COPY that failed on its data leaves the session between requests: a
// client that then goes quiet is not running a statement, and its next
// query's time starts with it, not with the COPY.
func TestMaxStatementTimeoutAfterAFailedCopy(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"max_statement_timeout": "2s"}))
	setup := r.connect(t, "acme")
	scratchTable(t, setup, "acme", "copy_quiet", "id int")
	hc := hijackDSN(t, r.dsn("acme"))
	startCopy(t, hc, "copy copy_quiet from stdin")
	time.Sleep(1500 * time.Millisecond)
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("bad\n")})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "22P02" {
		t.Fatalf("errors %v", codes)
	}
	// 2.5 s after the COPY began: its time is its own.
	if _, codes := simpleQuery(t, hc, "select pg_sleep(1)"); len(codes) > 0 {
		t.Fatalf("query after the failed COPY: errors %v", codes)
	}
	startCopy(t, hc, "copy copy_quiet from stdin")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("bad\n")})
	receiveUntil[*pgproto3.ReadyForQuery](t, hc)
	time.Sleep(4 * time.Second) // quiet: not a statement past its limit
	if rows, codes := simpleQuery(t, hc, "select 'still here'"); len(codes) > 0 || len(rows) != 1 {
		t.Fatalf("after a quiet spell: rows %v errors %v", rows, codes)
	}
	if n := r.counter("acme", "close", "statement_timeout"); n != 0 {
		t.Errorf("statement_timeout closes = %d, want 0", n)
	}
}
