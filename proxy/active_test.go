package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// backend.max_active_transactions against the real cluster: a running
// statement holds the only admission; another tenant's query waits for it
// and runs as soon as it ends, although its transaction stays open (a
// client's think time inside a transaction does not count); a wait past
// pool_wait_timeout gets 53300 naming the limit; session-mode tenants are
// not held back and do not hold others back, nor does an idle pinned
// session (TestMaxActiveTransactionsPinned).
func TestMaxActiveTransactions(t *testing.T) {
	r := startRouter(t,
		cfgMap{"backend": cfgMap{"max_active_transactions": 1}},
		tenantOverride("acme", cfgMap{"pool_wait_timeout": "300ms"}),
		tenantOverride("initech", cfgMap{"pool_mode": "session"}),
	)
	a := r.connect(t, "acme")
	mustExec(t, a, "begin")
	sleeping := runAsync(a, "select pg_sleep(2)")
	deadline := time.Now().Add(5 * time.Second)
	for active, _ := r.pool.ActiveTransactions(); active != 1; active, _ = r.pool.ActiveTransactions() {
		if time.Now().After(deadline) {
			t.Fatal("acme's statement never counted as active")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// globex waits for acme's transaction...
	g := r.connect(t, "globex")
	done := runAsync(g, "select 1")
	for r.pool.Stats()["globex"].AdmitWaiting != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("globex's query is not waiting for admission: %+v", r.pool.Stats()["globex"])
		}
		time.Sleep(5 * time.Millisecond)
	}
	// ...while a session-mode tenant is not counted...
	s := r.connect(t, "initech")
	if got := queryString(t, s, "select 'session mode runs'"); got != "session mode runs" {
		t.Errorf("session-mode query = %q", got)
	}
	// ...and acme's second session runs out of pool_wait_timeout.
	a2 := r.connect(t, "acme")
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		_, err := a2.Exec(testCtx(t, 10*time.Second), "select $1::int", mode, 1)
		pe := wantCode(t, err, "53300")
		if pe.Severity != "ERROR" || !strings.Contains(pe.Message, "max_active_transactions (1)") {
			t.Errorf("%v: %s %q does not name the limit", mode, pe.Severity, pe.Message)
		}
		if a2.PgConn().IsClosed() || a2.PgConn().TxStatus() != 'I' {
			t.Fatalf("%v: session not usable after the admission timeout", mode)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("globex's query finished (%v) while acme's statement held the only admission", err)
	default:
	}

	if err := <-sleeping; err != nil {
		t.Fatalf("acme's statement: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("globex's query after acme's statement: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("globex's query still waits while acme's transaction is idle")
	}
	// acme's next statement in its open transaction is not held back.
	mustExec(t, a, "select 1")
	mustExec(t, a, "commit")

	if active, limit := r.pool.ActiveTransactions(); active != 0 || limit != 1 {
		t.Errorf("ActiveTransactions() = %d, %d; want 0, 1 with every client idle", active, limit)
	}
}

// A pinned session (any SET) keeps its backend between transactions but
// not the admission: idle, it holds no one back; each of its transactions
// counts while it runs, so pinning is no way around the limit; at the
// limit its next transaction waits briefly, then runs above the limit, so
// that a pinned session holding a lock others wait on can still release it.
func TestMaxActiveTransactionsPinned(t *testing.T) {
	r := startRouter(t,
		cfgMap{"backend": cfgMap{"max_active_transactions": 1}},
		tenantOverride("acme", cfgMap{"pool_wait_timeout": "10s"}),
		tenantOverride("globex", cfgMap{"pool_wait_timeout": "10s"}),
	)
	a := r.connect(t, "acme")
	g := r.connect(t, "globex")
	active := func(n int) func() bool {
		return func() bool { got, _ := r.pool.ActiveTransactions(); return got == n }
	}
	mustExec(t, a, "set application_name = 'pinned'")
	eventually(t, 5*time.Second, "the pinned session's transaction ends its count", active(0))
	if got := queryString(t, g, "select 'beside an idle pinned session'"); got != "beside an idle pinned session" {
		t.Errorf("query beside an idle pinned session = %q", got)
	}

	// Its statement counts while it runs: globex waits for it.
	sleeping := runAsync(a, "select pg_sleep(1)")
	eventually(t, 5*time.Second, "the pinned session's statement counts", active(1))
	done := runAsync(g, "select 1")
	eventually(t, 5*time.Second, "globex waits for admission", func() bool { return r.pool.Stats()["globex"].AdmitWaiting == 1 })
	if err := <-sleeping; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A session-level lock: the pinned session holds it, another session's
	// admitted transaction waits on it, and the unlock (at the limit) still
	// runs. (Advisory locks are per database: the waiter is acme's too.)
	mustExec(t, a, "select pg_advisory_lock(42)")
	a2 := r.connect(t, "acme")
	locked := runAsync(a2, "select pg_advisory_lock(42)")
	eventually(t, 5*time.Second, "globex's transaction waits on the lock", func() bool {
		return superInt(t, "postgres", "select count(*) from pg_locks where locktype = 'advisory' and not granted") == 1
	})
	if got, _ := r.pool.ActiveTransactions(); got != 1 {
		t.Fatalf("ActiveTransactions() = %d with the waiting transaction admitted, want 1", got)
	}
	t0 := time.Now()
	mustExec(t, a, "select pg_advisory_unlock(42)")
	if d := time.Since(t0); d >= 5*time.Second { // pool_wait_timeout is 10s
		t.Errorf("the unlock took %v: it waited for the transaction it blocks", d)
	}
	if err := <-locked; err != nil {
		t.Fatalf("the lock after the pinned session's unlock: %v", err)
	}
	mustExec(t, a2, "select pg_advisory_unlock(42)")
	eventually(t, 5*time.Second, "every client idle", active(0))
}

// A driver's BEGIN, sent as its own round trip, admits the transaction for
// all of it: the short gap before the next statement does not let another
// transaction in beside it, so the limit bounds what runs at once.
func TestMaxActiveTransactionsBeginRoundTrip(t *testing.T) {
	r := startRouter(t,
		cfgMap{"backend": cfgMap{"max_active_transactions": 1}},
		tenantOverride("globex", cfgMap{"pool_wait_timeout": "300ms"}),
	)
	a := r.connect(t, "acme")
	tx, err := a.Begin(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if active, _ := r.pool.ActiveTransactions(); active != 1 {
		t.Fatalf("ActiveTransactions() = %d right after BEGIN, want 1", active)
	}
	sleeping := make(chan error, 1)
	go func() {
		_, err := tx.Exec(testCtx(t, 10*time.Second), "select pg_sleep(1)")
		sleeping <- err
	}()
	time.Sleep(100 * time.Millisecond) // the statement is running

	g := r.connect(t, "globex")
	_, err = g.Exec(testCtx(t, 10*time.Second), "select 1")
	wantCode(t, err, "53300")
	if active, _ := r.pool.ActiveTransactions(); active != 1 {
		t.Errorf("ActiveTransactions() = %d while one transaction runs, want 1", active)
	}
	if err := <-sleeping; err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := queryString(t, g, "select 'after the commit'"); got != "after the commit" {
		t.Errorf("globex after acme's commit: %q", got)
	}
}

// A pinned session whose COPY fails on its data while the client is still
// sending (the ReadyForQuery comes before the client's CopyDone) is idle
// afterwards and must not go on counting against the limit.
func TestMaxActiveTransactionsPinnedFailedCopy(t *testing.T) {
	r := startRouter(t, cfgMap{"backend": cfgMap{"max_active_transactions": 1}})
	scratchTable(t, r.connect(t, "acme"), "acme", "pinned_copy", "n int")
	hc := hijackDSN(t, r.dsn("acme"))
	if _, codes := simpleQuery(t, hc, "set application_name = 'pinned'"); len(codes) > 0 {
		t.Fatal(codes)
	}
	startCopy(t, hc, "copy pinned_copy from stdin")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("not a number\n")})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "22P02" {
		t.Fatalf("COPY of bad data: errors %v, want 22P02", codes)
	}
	eventually(t, 5*time.Second, "the idle pinned session stops counting", func() bool {
		n, _ := r.pool.ActiveTransactions()
		return n == 0
	})
	g := r.connect(t, "globex")
	if got := queryString(t, g, "select 'beside it'"); got != "beside it" {
		t.Errorf("globex beside the idle pinned session: %q", got)
	}
	wantAfter(t, hc)
}

// A pinned session whose COPY fails before the client sent any data (a
// statement trigger raises after the CopyInResponse) stops counting at the
// ReadyForQuery; the data and CopyDone the client then sends (as libpq
// does, before it reads the error) are ignored by the backend, answered by
// nothing, and must not count it again: its client is idle. Nor may a
// stray CopyDone of an idle pinned session, nor a lone CopyData make the
// session look busy.
func TestMaxActiveTransactionsPinnedStrayCopy(t *testing.T) {
	r := startRouter(t, cfgMap{"backend": cfgMap{"max_active_transactions": 1}},
		tenantOverride("acme", cfgMap{"max_statement_timeout": "500ms"}),
		tenantOverride("globex", cfgMap{"pool_wait_timeout": "1s"}))
	a := r.connect(t, "acme")
	scratchTable(t, a, "acme", "pinned_copy_trg", "n int")
	mustExec(t, a, `create or replace function pinned_copy_refuse() returns trigger language plpgsql as
		$$ begin raise exception 'no copies here'; end $$`)
	mustExec(t, a, `create trigger refuse before insert on pinned_copy_trg
		for each statement execute function pinned_copy_refuse()`)
	idle := func(what string) {
		t.Helper()
		eventually(t, 5*time.Second, "the pinned session stops counting "+what, func() bool {
			n, _ := r.pool.ActiveTransactions()
			return n == 0
		})
		time.Sleep(300 * time.Millisecond) // the client is idle now
		if n, _ := r.pool.ActiveTransactions(); n != 0 {
			t.Fatalf("%s: ActiveTransactions() = %d with the pinned session's client idle, want 0", what, n)
		}
	}

	hc := hijackDSN(t, r.dsn("acme"))
	if _, codes := simpleQuery(t, hc, "set application_name = 'pinned'"); len(codes) > 0 {
		t.Fatal(codes)
	}
	startCopy(t, hc, "copy pinned_copy_trg from stdin")
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "P0001" {
		t.Fatalf("COPY under a refusing trigger: errors %v, want P0001", codes)
	}
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{})
	idle("after a COPY failed before its data")
	sendAll(t, hc, &pgproto3.CopyDone{})
	idle("after a stray CopyDone")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")})
	idle("after a stray CopyData")
	time.Sleep(time.Second) // past max_statement_timeout: nothing runs, nothing to cancel
	g := r.connect(t, "globex")
	if got := queryString(t, g, "select 'beside it'"); got != "beside it" {
		t.Errorf("globex beside the idle pinned session: %q", got)
	}
	wantAfter(t, hc)
	if n := r.counter("acme", "cancel", "statement_timeout"); n != 0 {
		t.Errorf("statement_timeout cancels = %d for a session with nothing running", n)
	}
}

// A session that made itself unsure (a COPY with Syncs between its data,
// which fails: the router cannot tell how many answers are due) is pinned
// like any other, and its transactions count like any other pinned
// session's: being unsure is no way around the limit either.
func TestMaxActiveTransactionsUnsureSession(t *testing.T) {
	r := startRouter(t, cfgMap{"backend": cfgMap{"max_active_transactions": 1}},
		tenantOverride("globex", cfgMap{"pool_wait_timeout": "10s"}))
	scratchTable(t, r.connect(t, "acme"), "acme", "unsure_copy", "n int")
	hc := hijackDSN(t, r.dsn("acme"))
	startCopy(t, hc, "copy unsure_copy from stdin")
	sendAll(t, hc, &pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.Sync{}, &pgproto3.CopyData{Data: []byte("bad\n")}, &pgproto3.Sync{})
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) != 1 || codes[0] != "22P02" {
		t.Fatalf("COPY: errors %v, want 22P02", codes)
	}
	receiveUntil[*pgproto3.ReadyForQuery](t, hc) // the Sync read after the error
	if n := r.counter("acme", "pin", "copy_sync"); n != 1 {
		t.Fatalf("copy_sync pins %d, want 1", n)
	}
	eventually(t, 5*time.Second, "the idle unsure session stops counting", func() bool {
		n, _ := r.pool.ActiveTransactions()
		return n == 0
	})
	sendAll(t, hc, &pgproto3.Query{String: "select pg_sleep(1)"})
	eventually(t, 5*time.Second, "its statement counts", func() bool {
		n, _ := r.pool.ActiveTransactions()
		return n == 1
	})
	g := r.connect(t, "globex")
	done := runAsync(g, "select 1")
	eventually(t, 5*time.Second, "globex waits for admission", func() bool { return r.pool.Stats()["globex"].AdmitWaiting == 1 })
	if _, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 {
		t.Fatalf("pg_sleep: errors %v", codes)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "every client idle", func() bool {
		n, _ := r.pool.ActiveTransactions()
		return n == 0
	})
}
