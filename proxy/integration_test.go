package proxy_test

// Integration tests of the core router (issue 2) against a real PostgreSQL:
// routing, authentication, pooling in both modes, cancel, TLS, protocol
// abuse, graceful shutdown and the router's own errors. Real clients: pgx
// (simple and extended protocol), psql and pgbench.

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"

	"github.com/pgbridge/pgbridge/internal/pgtest"
)

// 1. Each tenant's login reaches its own database as its own backend role,
// with pgx and with psql, naming the database or the tenant.
func TestRoutesLoginToTenantDatabase(t *testing.T) {
	r := startRouter(t)
	for _, name := range []string{"acme", "globex"} {
		ti := tenants[name]
		want := ti.User + "|" + ti.Database
		for _, db := range []string{ti.Database, ti.Name} {
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
				conn := r.connect(t, name, "dbname="+db, "default_query_exec_mode="+modeName(mode))
				var user, gotDB string
				if err := conn.QueryRow(testCtx(t, 10*time.Second), "select current_user, current_database()").Scan(&user, &gotDB); err != nil {
					t.Fatalf("%s via pgx (dbname=%s, %v): %v", name, db, mode, err)
				}
				if got := user + "|" + gotDB; got != want {
					t.Errorf("%s via pgx (dbname=%s, %v): got %s, want %s", name, db, mode, got, want)
				}
			}

			dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s", r.port, ti.Login, db)
			out, err := command(testCtx(t, 30*time.Second), ti.LoginPassword, "psql", dsn, "-X", "-Atc",
				"select current_user, current_database()").CombinedOutput()
			if err != nil {
				t.Fatalf("psql as %s (dbname=%s): %v\n%s", ti.Login, db, err, out)
			}
			if got := strings.TrimSpace(string(out)); got != want {
				t.Errorf("psql as %s (dbname=%s): got %q, want %q", ti.Login, db, got, want)
			}
		}
	}
}

func modeName(m pgx.QueryExecMode) string {
	switch m {
	case pgx.QueryExecModeSimpleProtocol:
		return "simple_protocol"
	case pgx.QueryExecModeExec:
		return "exec"
	}
	panic("unexpected mode")
}

// 2. A login asking for another tenant's database gets 3D000; a wrong
// password and an unknown user get the same 28P01.
func TestLoginRefusals(t *testing.T) {
	r := startRouter(t)
	acme, globex := tenants["acme"], tenants["globex"]

	for _, db := range []string{globex.Database, globex.Name, "postgres"} {
		_, err := connectCfg(t, connConfig(t, r.dsn("acme", "dbname="+db)))
		pe := wantCode(t, err, "3D000")
		if pe.Severity != "FATAL" {
			t.Errorf("dbname=%s: severity %s, want FATAL", db, pe.Severity)
		}
	}

	// The role cannot be chosen at login any more than with SET ROLE.
	for _, opt := range []string{"options='-c role=" + acme.User + "'", "options='-c Session_Authorization=" + acme.User + "'"} {
		_, err := connectCfg(t, connConfig(t, r.dsn("acme", opt)))
		if pe := wantCode(t, err, "42501"); pe.Severity != "FATAL" {
			t.Errorf("%s: severity %s, want FATAL", opt, pe.Severity)
		}
	}

	authErr := func(user, password string) *pgconn.PgError {
		t.Helper()
		dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=10",
			r.port, user, password, acme.Database)
		_, err := connectCfg(t, connConfig(t, dsn))
		pe := wantCode(t, err, "28P01")
		if pe.Severity != "FATAL" {
			t.Errorf("user %s: severity %s, want FATAL", user, pe.Severity)
		}
		if want := fmt.Sprintf("password authentication failed for user %q", user); pe.Message != want {
			t.Errorf("user %s: message %q, want %q", user, pe.Message, want)
		}
		return pe
	}
	wrong := authErr(acme.Login, "not-the-password")
	unknown := authErr("nobody_at_all", "whatever")
	// Nothing else may tell the two apart.
	if wrong.Detail != unknown.Detail || wrong.Hint != unknown.Hint || wrong.Routine != unknown.Routine {
		t.Errorf("wrong password and unknown user differ: %+v vs %+v", wrong, unknown)
	}
	// Another tenant's password does not work for acme's login either.
	authErr(acme.Login, globex.LoginPassword)

	// A malformed SCRAM exchange (here a client-final-message with a nonce
	// other than the one agreed) is the same protocol error for a known
	// user and an unknown one.
	badFinal := func(user string) *pgproto3.ErrorResponse {
		t.Helper()
		nc := rawDial(t, r)
		fe := pgproto3.NewFrontend(bufio.NewReader(nc), nc)
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{"user": user, "database": acme.Database}})
		fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdefghijklmnop")})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("user %s: %v", user, err)
			}
			switch m := m.(type) {
			case *pgproto3.AuthenticationSASLContinue:
				proof := base64.StdEncoding.EncodeToString(make([]byte, 32))
				fe.Send(&pgproto3.SASLResponse{Data: []byte("c=biws,r=abcdefghijklmnopWRONG,p=" + proof)})
				if err := fe.Flush(); err != nil {
					t.Fatal(err)
				}
			case *pgproto3.ErrorResponse:
				c := *m
				return &c
			}
		}
	}
	known, nobody := badFinal(acme.Login), badFinal("nobody_at_all")
	if known.Code != "08P01" || known.Code != nobody.Code || known.Message != nobody.Message || known.Severity != nobody.Severity {
		t.Errorf("malformed SCRAM: known user got %s %q, unknown user %s %q", known.Code, known.Message, nobody.Code, nobody.Message)
	}
}

// 3. 200 concurrent clients share a pool of 5 backends in transaction mode;
// the cluster never sees more than 5 backends of the tenant.
func TestManyClientsShareSmallPool(t *testing.T) {
	const (
		clients  = 200
		poolSize = 5
		rounds   = 4
	)
	ti := tenants["initech"]
	// Generous login and wait limits: 200 SCRAM logins under -race on a
	// small shared machine can be slow, and speed is not what this checks.
	r := startRouter(t, cfgMap{"listen": cfgMap{"login_timeout": "60s"}}, tenantOverride("initech", cfgMap{
		"pool_size": poolSize, "max_client_connections": clients + 10, "pool_wait_timeout": "60s",
	}))

	countSQL := "select count(*) from pg_stat_activity where usename = $1"
	eventually(t, 10*time.Second, "no leftover initech backends", func() bool {
		return superInt(t, "postgres", countSQL, ti.User) == 0
	})

	// A superuser samples pg_stat_activity continuously during the run, on
	// one direct connection so that samples come fast.
	sampler, err := pgx.Connect(testCtx(t, 10*time.Second), cluster.SuperDSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(sampler)
	var maxSeen, samples atomic.Int64
	stopSampling := make(chan struct{})
	samplerDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stopSampling:
				samplerDone <- nil
				return
			default:
			}
			var n int64
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := sampler.QueryRow(ctx, countSQL, ti.User).Scan(&n)
			cancel()
			if err != nil {
				samplerDone <- err
				return
			}
			samples.Add(1)
			for {
				m := maxSeen.Load()
				if n <= m || maxSeen.CompareAndSwap(m, n) {
					break
				}
			}
		}
	}()

	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, clients)
	)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mode := pgx.QueryExecModeSimpleProtocol
			if i%2 == 1 {
				mode = pgx.QueryExecModeExec
			}
			errs <- runClient(r.dsn("initech", "default_query_exec_mode="+modeName(mode), "connect_timeout=60"), i, rounds, start)
		}()
	}
	close(start)
	// If clients are still running long after they should have finished,
	// record what the tenant's backends are doing while it still matters:
	// an idle backend whose last query is a waiting client's means the
	// response was lost on the way.
	stuck := make(chan string, 1)
	watchdog := time.AfterFunc(45*time.Second, func() { stuck <- backendStates(ti.User) })
	wg.Wait()
	watchdog.Stop()
	close(stopSampling)
	if err := <-samplerDone; err != nil {
		t.Errorf("sampler: %v", err)
	}
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			if failed < 5 {
				t.Errorf("client: %v", err)
			}
			failed++
		}
	}
	if failed > 0 {
		select {
		case states := <-stuck:
			t.Logf("backends of %s 45s into the run:\n%s", ti.User, states)
		default:
		}
		t.Fatalf("%d of %d clients failed", failed, clients)
	}
	t.Logf("pg_stat_activity: %d samples, at most %d backends of %s", samples.Load(), maxSeen.Load(), ti.User)
	if samples.Load() < 3 {
		t.Errorf("only %d pg_stat_activity samples were taken during the run", samples.Load())
	}
	if maxSeen.Load() < 1 {
		t.Errorf("the sampler never saw a backend of %s: it measures nothing", ti.User)
	}
	if maxSeen.Load() > poolSize {
		t.Errorf("pg_stat_activity showed %d backends of %s, pool_size is %d", maxSeen.Load(), ti.User, poolSize)
	}
}

// backendStates lists pid, state and last query of user's backends.
func backendStates(user string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cluster.SuperDSN("postgres"))
	if err != nil {
		return err.Error()
	}
	defer closeConn(conn)
	rows, err := conn.Query(ctx, "select pid, coalesce(state, ''), query from pg_stat_activity where usename = $1", user)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for rows.Next() {
		var pid int
		var state, query string
		if err := rows.Scan(&pid, &state, &query); err != nil {
			return err.Error()
		}
		fmt.Fprintf(&b, "  %d %s %q\n", pid, state, query)
	}
	return b.String()
}

// runClient is one of the concurrent clients: connect, wait for the
// start signal, run single statements and small transactions, check every
// result.
func runClient(dsn string, id, rounds int, start <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("client %d: connect: %w", id, err)
	}
	defer closeConn(conn)
	<-start
	for k := range rounds {
		var got int
		if err := conn.QueryRow(ctx, "select $1::int + $2::int", id, k).Scan(&got); err != nil {
			return fmt.Errorf("client %d round %d: %w", id, k, err)
		}
		if got != id+k {
			return fmt.Errorf("client %d round %d: got %d, want %d", id, k, got, id+k)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("client %d round %d: begin: %w", id, k, err)
		}
		var pid1, pid2 int
		if err := tx.QueryRow(ctx, "select pg_backend_pid()").Scan(&pid1); err != nil {
			return fmt.Errorf("client %d round %d: in tx: %w", id, k, err)
		}
		if err := tx.QueryRow(ctx, "select pg_backend_pid() + $1::int", 0).Scan(&pid2); err != nil {
			return fmt.Errorf("client %d round %d: in tx: %w", id, k, err)
		}
		if pid1 != pid2 {
			return fmt.Errorf("client %d round %d: transaction moved from backend %d to %d", id, k, pid1, pid2)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("client %d round %d: commit: %w", id, k, err)
		}
	}
	return nil
}

// 4. In session mode SET survives across statements and is gone for the
// next client of the same backend.
func TestSessionModeStateIsResetBetweenClients(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_mode": "session", "pool_size": 1}))

	c1 := r.connect(t, "acme")
	mustExec(t, c1, "set application_name = 'sess_one'")
	mustExec(t, c1, "set search_path = app_data, public")
	mustExec(t, c1, "create temp table sess_tmp(x int)")
	pid := queryInt(t, c1, "select pg_backend_pid()")
	for i := range 3 {
		if got := queryString(t, c1, "show application_name"); got != "sess_one" {
			t.Fatalf("statement %d: application_name = %q, want sess_one", i, got)
		}
		if got := queryString(t, c1, "show search_path"); got != "app_data, public" {
			t.Fatalf("statement %d: search_path = %q", i, got)
		}
		if got := queryInt(t, c1, "select pg_backend_pid()"); got != pid {
			t.Fatalf("statement %d: backend changed from %d to %d in session mode", i, pid, got)
		}
	}
	if got := c1.PgConn().ParameterStatus("application_name"); got != "sess_one" {
		t.Errorf("client did not get the backend's ParameterStatus for application_name: %q", got)
	}
	closeConn(c1)

	c2 := r.connect(t, "acme")
	if got := queryInt(t, c2, "select pg_backend_pid()"); got != pid {
		t.Fatalf("next client got backend %d, want the same backend %d (pool_size 1)", got, pid)
	}
	if got := queryString(t, c2, "show application_name"); got == "sess_one" {
		t.Errorf("application_name leaked to the next client")
	}
	if got := queryString(t, c2, "show search_path"); got != `"$user", public` {
		t.Errorf("search_path leaked to the next client: %q", got)
	}
	if n := queryInt(t, c2, "select count(*) from pg_class where relname = 'sess_tmp'"); n != 0 {
		t.Errorf("temp table of the previous client still exists")
	}
}

// 5. A client that vanishes mid-transaction leaves no trace: its writes are
// rolled back and the next client of the (single) pool slot starts clean.
func TestClientKilledMidTransaction(t *testing.T) {
	ti := tenants["acme"]
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1}))
	setup := r.connect(t, "acme")
	mustExec(t, setup, "create table kill_probe(id int)")
	t.Cleanup(func() { _ = cluster.Exec(context.Background(), ti.Database, "drop table if exists kill_probe") })
	closeConn(setup)

	var notices []string
	var mu sync.Mutex
	nextClientIsClean := func(id int) {
		t.Helper()
		cc := connConfig(t, r.dsn("acme"))
		cc.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
			mu.Lock()
			notices = append(notices, n.Severity+": "+n.Message)
			mu.Unlock()
		}
		b, err := connectCfg(t, cc)
		if err != nil {
			t.Fatal(err)
		}
		if n := queryInt(t, b, "select count(*) from kill_probe where id = $1", id); n != 0 {
			t.Errorf("uncommitted insert of the killed client is visible to the next client")
		}
		if got := queryString(t, b, "select coalesce(txid_current_if_assigned()::text, 'none')"); got != "none" {
			t.Errorf("next client runs inside a transaction with xid %s", got)
		}
		// One simple-protocol statement is its own transaction: now() is its
		// start. Inside a leftover transaction now() would be older.
		if got := queryString(t, b, "select (now() = statement_timestamp())::text", pgx.QueryExecModeSimpleProtocol); got != "true" {
			t.Errorf("next client's statement is not the start of its own transaction")
		}
		mustExec(t, b, "begin")
		if s := b.PgConn().TxStatus(); s != 'T' {
			t.Errorf("after BEGIN: tx status %q", s)
		}
		mustExec(t, b, "insert into kill_probe values (100)")
		mustExec(t, b, "commit")
		mu.Lock()
		defer mu.Unlock()
		for _, n := range notices {
			t.Errorf("next client got notice %q", n)
		}
		notices = nil
	}

	// pgx client: the TCP connection is closed under it mid-transaction.
	a := r.connect(t, "acme")
	mustExec(t, a, "begin")
	mustExec(t, a, "insert into kill_probe values (1)")
	if got := queryString(t, a, "select coalesce(txid_current_if_assigned()::text, 'none')"); got == "none" {
		t.Fatalf("the killed client's transaction has no xid; the test proves nothing")
	}
	_ = a.PgConn().Conn().Close()
	nextClientIsClean(1)

	// psql, killed with SIGKILL while idle in its transaction.
	cmd := command(testCtx(t, 30*time.Second), ti.LoginPassword, "psql", "-X", "-q",
		fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s", r.port, ti.Login, ti.Database))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var psqlOut strings.Builder
	cmd.Stdout, cmd.Stderr = &psqlOut, &psqlOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "begin;\ninsert into kill_probe values (2);\nselect 'psql-ready';\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "psql idle in transaction after its insert", func() bool {
		return superInt(t, "postgres", "select count(*) from pg_stat_activity where usename = $1 "+
			"and state = 'idle in transaction' and query like '%psql-ready%'", ti.User) == 1
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	nextClientIsClean(2)

	// No backend of the tenant is left inside a transaction, and only the
	// committed rows exist.
	eventually(t, 5*time.Second, "no acme backend idle in transaction", func() bool {
		return superInt(t, "postgres", "select count(*) from pg_stat_activity where usename = $1 "+
			"and state like 'idle in transaction%'", ti.User) == 0
	})
	if n := superInt(t, ti.Database, "select count(*) from kill_probe"); n != 2 {
		t.Errorf("kill_probe has %d rows, want the 2 committed by the clean clients", n)
	}
}

// cancelOnContext makes pgx turn a cancelled context into a CancelRequest
// (sent through the router) and only much later into a broken socket, so a
// query returns quickly only if the router forwarded the cancel.
func cancelOnContext(cc *pgx.ConnConfig) {
	cc.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 20 * time.Second}
	}
}

// 6. Cancel: pgx's CancelRequest through the router stops the query; a
// cancel key reaches only its own session.
func TestCancelRequest(t *testing.T) {
	r := startRouter(t)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		cc := connConfig(t, r.dsn("acme"))
		cancelOnContext(cc)
		conn, err := connectCfg(t, cc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		_, err = conn.Exec(ctx, "select pg_sleep($1::float8)", mode, 10)
		cancel()
		elapsed := time.Since(start)
		pe := wantCode(t, err, "57014")
		if elapsed > 5*time.Second {
			t.Errorf("%v: cancelled query returned after %s", mode, elapsed)
		}
		t.Logf("%v: cancelled after %s: %s", mode, elapsed, pe.Message)
		if got := queryInt(t, conn, "select 41 + 1"); got != 42 {
			t.Errorf("%v: session unusable after cancel", mode)
		}
	}

	// The router issues its own keys: the client never learns a backend's.
	a := r.connect(t, "acme")
	b := r.connect(t, "acme")
	if queryInt(t, a, "select pg_backend_pid()") == int64(a.PgConn().PID()) {
		t.Errorf("client's BackendKeyData carries the backend's pid")
	}
	keyA := rawKey{pid: a.PgConn().PID(), secret: a.PgConn().SecretKey()}
	keyB := rawKey{pid: b.PgConn().PID(), secret: b.PgConn().SecretKey()}
	if len(keyA.secret) != 4 || keyA.pid == keyB.pid && string(keyA.secret) == string(keyB.secret) {
		t.Fatalf("unexpected cancel keys %+v %+v", keyA, keyB)
	}

	// A's key while A is idle and B is running: B is untouched.
	user := tenants["acme"].User
	bDone := runAsync(b, "select pg_sleep(1.5)")
	waitActive(t, user, "select pg_sleep(1.5)")
	sendCancel(t, r, keyA)
	sendCancel(t, r, rawKey{pid: keyB.pid, secret: []byte{^keyB.secret[0], 1, 2, 3}}) // bogus secret
	sendCancel(t, r, rawKey{pid: 12345, secret: []byte{1, 2, 3, 4}})                  // bogus key
	if err := <-bDone; err != nil {
		t.Errorf("B's query was disturbed by a cancel with another client's or a bogus key: %v", err)
	}

	// A's key while both run: A is cancelled, B finishes.
	aDone := runAsync(a, "select pg_sleep(10)")
	bDone = runAsync(b, "select pg_sleep(1.5)")
	waitActive(t, user, "select pg_sleep(10)")
	waitActive(t, user, "select pg_sleep(1.5)")
	start := time.Now()
	sendCancel(t, r, keyA)
	select {
	case err := <-aDone:
		wantCode(t, err, "57014")
	case <-time.After(8 * time.Second):
		t.Fatalf("A's query was not cancelled by a CancelRequest with A's key")
	}
	t.Logf("raw cancel took effect after %s", time.Since(start))
	if err := <-bDone; err != nil {
		t.Errorf("cancel with A's key hit B: %v", err)
	}
}

// A cancel request the server is slow to take (here: a forwarder in front
// of PostgreSQL holds the cancel connection until told) holds up nothing
// but itself: the console lists the clients meanwhile, other clients log in
// and run, and the cancel still lands once the server takes it.
func TestSlowCancelHoldsNothingElse(t *testing.T) {
	fw := startForwarder(t, fmt.Sprintf("%s:%d", cluster.Host, cluster.Port))
	r := startRouter(t, cfgMap{"backend": cfgMap{"host": "127.0.0.1", "port": fw.port}})
	a := r.connect(t, "acme")
	g := r.connect(t, "globex") // its pool is warm: logins need no new backend
	closeConn(g)
	key := rawKey{pid: a.PgConn().PID(), secret: a.PgConn().SecretKey()}
	aDone := runAsync(a, "select pg_sleep(30)")
	waitActive(t, tenants["acme"].User, "select pg_sleep(30)")

	release := fw.holdNew()
	t.Cleanup(release)
	cancelled := make(chan struct{})
	go func() { sendCancel(t, r, key); close(cancelled) }()
	eventually(t, 10*time.Second, "the cancel to reach the forwarder", func() bool { return fw.held.Load() > 0 })

	// The cancel gives up after 5 s: the console must answer well before.
	rows, err := r.admin(t).Query(testCtx(t, 3*time.Second), "SHOW CLIENTS")
	if err == nil {
		for rows.Next() {
		}
		err = rows.Err()
	}
	if err != nil {
		t.Fatalf("SHOW CLIENTS while a cancel is held: %v", err)
	}
	if n := queryInt(t, r.connect(t, "globex"), "select 7"); n != 7 {
		t.Fatal(n)
	}
	release()
	<-cancelled
	wantCode(t, <-aDone, "57014")
	if got := queryInt(t, a, "select 1"); got != 1 {
		t.Fatal(got)
	}
}

// forwarder relays TCP connections to a server; holdNew makes it keep new
// connections unanswered until the returned function is called.
type forwarder struct {
	port int
	to   string
	mu   sync.Mutex
	gate chan struct{} // closed when new connections may go through
	held atomic.Int32
}

func startForwarder(t *testing.T, to string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fw := &forwarder{port: ln.Addr().(*net.TCPAddr).Port, to: to, gate: make(chan struct{})}
	close(fw.gate)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { fw.serve(c) })
		}
	})
	return fw
}

func (fw *forwarder) holdNew() (release func()) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.gate = make(chan struct{})
	return sync.OnceFunc(func() { close(fw.gate) })
}

func (fw *forwarder) serve(c net.Conn) {
	defer c.Close()
	fw.mu.Lock()
	gate := fw.gate
	fw.mu.Unlock()
	select {
	case <-gate:
	default:
		fw.held.Add(1)
		<-gate
	}
	s, err := net.Dial("tcp", fw.to)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(s, c); _ = s.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, s); done <- struct{}{} }()
	<-done
	<-done
}

type rawKey struct {
	pid    uint32
	secret []byte
}

// sendCancel sends a CancelRequest on a fresh connection to the router and
// waits until the router closes it (it has acted on the request by then).
func sendCancel(t *testing.T, r *router, k rawKey) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	buf := make([]byte, 12, 12+len(k.secret))
	binary.BigEndian.PutUint32(buf[0:4], uint32(12+len(k.secret)))
	binary.BigEndian.PutUint32(buf[4:8], 80877102)
	binary.BigEndian.PutUint32(buf[8:12], k.pid)
	buf = append(buf, k.secret...)
	if _, err := nc.Write(buf); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, nc)
	if err != nil {
		t.Fatalf("cancel connection: %v", err)
	}
	if n != 0 {
		t.Errorf("router answered a CancelRequest with %d bytes", n)
	}
}

// waitActive waits until a backend of user is running query.
func waitActive(t *testing.T, user, query string) {
	t.Helper()
	eventually(t, 10*time.Second, "backend running "+query, func() bool {
		return superInt(t, "postgres", "select count(*) from pg_stat_activity where usename = $1 "+
			"and state = 'active' and query = $2", user, query) > 0
	})
}

// runAsync runs sql on conn in a goroutine and reports its error.
func runAsync(conn *pgx.Conn, sql string) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := conn.Exec(ctx, sql)
		done <- err
	}()
	return done
}

// 7. pgbench initialises and runs select-only through the router in simple
// and extended protocol mode without a single failure.
func TestPgbench(t *testing.T) {
	ti := tenants["umbrella"]
	r := startRouter(t, tenantOverride("umbrella", cfgMap{"pool_size": 4}))
	conn := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(r.port), "-U", ti.Login}
	run := func(args ...string) string {
		t.Helper()
		args = append(append(args, conn...), ti.Name) // database = tenant name
		out, err := command(testCtx(t, 90*time.Second), ti.LoginPassword, "pgbench", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := run("-i", "-s", "1", "-q")
	if !strings.Contains(out, "done in") {
		t.Fatalf("pgbench -i did not finish:\n%s", out)
	}
	t.Cleanup(func() {
		for _, tbl := range []string{"pgbench_accounts", "pgbench_branches", "pgbench_history", "pgbench_tellers"} {
			_ = cluster.Exec(context.Background(), ti.Database, "drop table if exists "+tbl)
		}
	})
	processed := regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	for _, mode := range []string{"simple", "extended"} {
		out := run("-S", "-M", mode, "-c", "8", "-j", "2", "-T", "3")
		if !strings.Contains(out, "number of failed transactions: 0 ") {
			t.Errorf("-M %s: failed transactions:\n%s", mode, out)
		}
		if strings.Contains(out, "aborted") {
			t.Errorf("-M %s: clients aborted:\n%s", mode, out)
		}
		m := processed.FindStringSubmatch(out)
		if m == nil || m[1] == "0" {
			t.Errorf("-M %s: no transactions processed:\n%s", mode, out)
		}
		t.Logf("-M %s: %s transactions", mode, m[1])
	}
}

// 8. TLS towards clients: offered in allow mode (and verifiable against the
// CA), required in require mode.
func TestClientTLS(t *testing.T) {
	certs, err := pgtest.GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(certs.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	serverCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := func(mode string) cfgMap {
		return cfgMap{"listen": cfgMap{"tls": cfgMap{"cert_file": certs.CertFile, "key_file": certs.KeyFile, "mode": mode}}}
	}
	checkTLS := func(conn *pgx.Conn, what string) {
		t.Helper()
		tc, ok := conn.PgConn().Conn().(*tls.Conn)
		if !ok {
			t.Fatalf("%s: connection is %T, not TLS", what, conn.PgConn().Conn())
		}
		st := tc.ConnectionState()
		if !st.HandshakeComplete || len(st.PeerCertificates) == 0 || !st.PeerCertificates[0].Equal(serverCert) {
			t.Fatalf("%s: the router did not present its certificate: %+v", what, st.PeerCertificates)
		}
		if got := queryInt(t, conn, "select 7 * 6"); got != 42 {
			t.Fatalf("%s: query over TLS failed", what)
		}
	}

	allow := startRouter(t, tlsCfg("allow"))
	checkTLS(allow.connect(t, "acme", "sslmode=require"), "sslmode=require")
	checkTLS(allow.connect(t, "acme", "sslmode=verify-full", "sslrootcert="+certs.CAFile), "sslmode=verify-full")
	plain := allow.connect(t, "acme", "sslmode=disable")
	if _, ok := plain.PgConn().Conn().(*tls.Conn); ok {
		t.Errorf("sslmode=disable ended up on TLS")
	}
	if got := queryInt(t, plain, "select 1"); got != 1 {
		t.Errorf("plaintext query in allow mode failed")
	}

	// pgx sends its CancelRequest over TLS when the session uses TLS.
	cc := connConfig(t, allow.dsn("acme", "sslmode=verify-full", "sslrootcert="+certs.CAFile))
	cancelOnContext(cc)
	conn, err := connectCfg(t, cc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = conn.Exec(ctx, "select pg_sleep(10)")
	cancel()
	wantCode(t, err, "57014")

	// psql verifies the certificate too.
	ti := tenants["acme"]
	out, err := command(testCtx(t, 30*time.Second), ti.LoginPassword, "psql",
		fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=verify-full sslrootcert=%s", allow.port, ti.Login, ti.Database, certs.CAFile),
		"-X", "-Atc", "select current_user").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != ti.User {
		t.Errorf("psql over TLS: %v\n%s", err, out)
	}

	require := startRouter(t, tlsCfg("require"))
	_, err = connectCfg(t, connConfig(t, require.dsn("acme", "sslmode=disable")))
	pe := wantCode(t, err, "28000")
	if pe.Severity != "FATAL" || !strings.Contains(pe.Message, "TLS") {
		t.Errorf("plaintext refusal: %s %q, want FATAL mentioning TLS", pe.Severity, pe.Message)
	}
	checkTLS(require.connect(t, "acme", "sslmode=require"), "require mode")
}

// 9. Malformed input gets a clear protocol error or a prompt close, never
// a hang; the router keeps serving everyone else.
func TestBadInput(t *testing.T) {
	r := startRouter(t) // login_timeout 10s: a close before that is not the timeout
	stillServes := func(what string) {
		t.Helper()
		conn := r.connect(t, "acme")
		if got := queryInt(t, conn, "select 1"); got != 1 {
			t.Fatalf("after %s: router no longer serves", what)
		}
		closeConn(conn)
	}

	startup := func(length, code uint32, rest ...byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, length)
		b = binary.BigEndian.AppendUint32(b, code)
		return append(b, rest...)
	}
	for _, tc := range []struct {
		name  string
		input []byte
		code  string // 08P01 unless set
	}{
		{name: "http request", input: []byte("GET / HTTP/1.1\r\nHost: pgbridge\r\n\r\n")},
		{name: "tls hello without SSLRequest", input: []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}},
		{name: "random bytes", input: []byte{0x9c, 0x41, 0x07, 0xee, 0x13, 0x5a, 0xd2, 0x88, 0x01, 0x7f, 0x66, 0x30, 0xab, 0xcd}},
		{name: "length too small", input: startup(3, 196608)},
		// PostgreSQL answers a protocol it does not speak with 0A000.
		{name: "protocol 2.0", input: startup(8, 2<<16), code: "0A000"},
		{name: "protocol 4.0", input: startup(8, 4<<16), code: "0A000"},
		{name: "oversized startup packet", input: append(startup(20000, 196608), make([]byte, 100)...)},
		{name: "startup without terminator", input: startup(17, 196608, 'u', 's', 'e', 'r', 0, 'x', 0, 'y', 'z')},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := rawDial(t, r)
			if _, err := nc.Write(tc.input); err != nil {
				t.Fatal(err)
			}
			e := wantClosedWithFatal(t, nc, cmp.Or(tc.code, "08P01"))
			t.Logf("%s: %s", tc.name, e.Message)
			stillServes(tc.name)
		})
	}
	t.Run("oversized mentions the limit", func(t *testing.T) {
		nc := rawDial(t, r)
		_, _ = nc.Write(startup(20000, 196608))
		msgs, _ := readUntilClosed(nc, 5*time.Second)
		if len(msgs) != 1 || !strings.Contains(msgs[0].(*pgproto3.ErrorResponse).Message, "20000") {
			t.Errorf("oversized startup packet: %v", msgs)
		}
	})

	t.Run("login timeout", func(t *testing.T) {
		slow := startRouter(t, cfgMap{"listen": cfgMap{"login_timeout": "300ms"}})
		ti := tenants["acme"]
		sm, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{"user": ti.Login, "database": ti.Database}}).Encode(nil)
		for _, stall := range []struct {
			name string
			send []byte
		}{
			{"silent client", nil},
			{"half a startup packet", sm[:6]},
			{"stalls in SCRAM", sm},
		} {
			nc := rawDial(t, slow)
			if len(stall.send) > 0 {
				if _, err := nc.Write(stall.send); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			_, err := readUntilClosed(nc, 3*time.Second)
			if err != nil {
				t.Errorf("%s: not closed within 3s of a 300ms login_timeout: %v", stall.name, err)
			}
			t.Logf("%s: closed after %s", stall.name, time.Since(start))
		}
		conn := slow.connect(t, "acme")
		if got := queryInt(t, conn, "select 1"); got != 1 {
			t.Fatal("router no longer serves after login timeouts")
		}
	})

	t.Run("invalid message type after login", func(t *testing.T) {
		before := r.counter("acme", "close", "protocol_violation")
		sendWantProtocolFatal(t, hijack(t, r), []byte{'z', 0, 0, 0, 4})
		stillServes("invalid message type")
		if n := r.counter("acme", "close", "protocol_violation") - before; n != 1 {
			t.Errorf("protocol_violation closes counted %d, want 1", n)
		}
	})

	t.Run("invalid message length after login", func(t *testing.T) {
		before := r.counter("acme", "close", "protocol_violation")
		sendWantProtocolFatal(t, hijack(t, r), []byte{'Q', 0, 0, 0, 2})
		stillServes("invalid message length")
		if n := r.counter("acme", "close", "protocol_violation") - before; n != 1 {
			t.Errorf("protocol_violation closes counted %d, want 1", n)
		}
	})

	t.Run("terminate", func(t *testing.T) {
		hc := hijack(t, r)
		// A query first, so a backend has been used by the session.
		hc.Frontend.Send(&pgproto3.Query{String: "select 1"})
		if err := hc.Frontend.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := hc.Frontend.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		if _, err := hc.Conn.Write([]byte{'X', 0, 0, 0, 4}); err != nil {
			t.Fatal(err)
		}
		msgs, err := receiveUntilClosed(hc, 5*time.Second)
		if err != nil {
			t.Fatalf("Terminate did not end the session: %v", err)
		}
		if len(msgs) != 0 {
			t.Errorf("Terminate answered with %v", msgs)
		}
		stillServes("terminate")
	})
}

func rawDial(t *testing.T, r *router) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// readUntilClosed decodes backend messages from a raw startup-phase
// connection until the peer closes it. It fails if the connection stays
// open for d.
func readUntilClosed(nc net.Conn, d time.Duration) ([]pgproto3.BackendMessage, error) {
	_ = nc.SetReadDeadline(time.Now().Add(d))
	fe := pgproto3.NewFrontend(bufio.NewReader(nc), nc)
	var msgs []pgproto3.BackendMessage
	for {
		m, err := fe.Receive()
		if err != nil {
			if isTimeoutErr(err) {
				return msgs, err
			}
			return msgs, nil
		}
		// Copy: Receive reuses message values.
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			c := *m
			msgs = append(msgs, &c)
		case *pgproto3.AuthenticationSASL:
			// The SCRAM stall case: keep reading until the router gives up.
		default:
			msgs = append(msgs, m)
		}
	}
}

// sendWantProtocolFatal writes raw on hc and wants one FATAL 08P01
// ErrorResponse back, then the connection closed.
func sendWantProtocolFatal(t *testing.T, hc *pgconn.HijackedConn, raw []byte) {
	t.Helper()
	if _, err := hc.Conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	wantFatalClose(t, hc, "08P01")
}

// wantFatalClose wants one FATAL ErrorResponse with code on hc, then the
// connection closed, within 10 s.
func wantFatalClose(t *testing.T, hc *pgconn.HijackedConn, code string) {
	t.Helper()
	msgs, err := receiveUntilClosed(hc, 10*time.Second)
	if err != nil {
		t.Fatalf("session not closed: %v", err)
	}
	if len(msgs) != 1 {
		t.Fatalf("want one ErrorResponse, got %v", msgs)
	}
	if e, ok := msgs[0].(*pgproto3.ErrorResponse); !ok || e.Code != code || e.Severity != "FATAL" {
		t.Fatalf("want FATAL %s, got %#v", code, msgs[0])
	}
}

func receiveUntilClosed(hc *pgconn.HijackedConn, d time.Duration) ([]pgproto3.BackendMessage, error) {
	_ = hc.Conn.SetReadDeadline(time.Now().Add(d))
	var msgs []pgproto3.BackendMessage
	for {
		m, err := hc.Frontend.Receive()
		if err != nil {
			if isTimeoutErr(err) {
				return msgs, err
			}
			return msgs, nil
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			c := *e
			msgs = append(msgs, &c)
			continue
		}
		msgs = append(msgs, m)
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// hijack logs in through r with pgx and takes over the raw connection.
func hijack(t *testing.T, r *router) *pgconn.HijackedConn {
	t.Helper()
	return hijackDSN(t, r.dsn("acme"))
}

// hijackDSN logs in with pgx at dsn and takes over the raw connection.
func hijackDSN(t *testing.T, dsn string) *pgconn.HijackedConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return hijackConfig(t, cfg)
}

// hijackSlowReader is hijackDSN for a client whose socket receive buffer
// is small, set before it connects (shrinking it later makes the kernel
// drop data it already allowed, and the sender's retransmissions back
// off for seconds): the router blocks writing to it soon after the client
// stops reading.
func hijackSlowReader(t *testing.T, dsn string) *pgconn.HijackedConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	cfg.DialFunc = d.DialContext
	return hijackConfig(t, cfg)
}

func hijackConfig(t *testing.T, cfg *pgconn.Config) *pgconn.HijackedConn {
	t.Helper()
	pc, err := pgconn.ConnectConfig(testCtx(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	return hc
}

// 10. Shutdown: idle sessions end with 57P01 at once; a running transaction
// finishes and commits first; Serve returns.
func TestGracefulShutdown(t *testing.T) {
	ti := tenants["acme"]
	before := goleak.IgnoreCurrent()
	r := startRouter(t)
	setup := r.connect(t, "acme")
	mustExec(t, setup, "create table shutdown_probe(id int)")
	t.Cleanup(func() { _ = cluster.Exec(context.Background(), ti.Database, "drop table if exists shutdown_probe") })
	closeConn(setup)

	idle := r.connect(t, "acme")
	busy := r.connect(t, "acme")
	mustExec(t, busy, "begin")
	mustExec(t, busy, "insert into shutdown_probe values (1)")
	sleepDone := runAsync(busy, "select pg_sleep(1)")
	waitActive(t, ti.User, "select pg_sleep(1)")

	r.cancel() // Serve starts draining

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := idle.PgConn().WaitForNotification(ctx)
	cancel()
	wantCode(t, err, "57P01")

	if err := <-sleepDone; err != nil {
		t.Fatalf("running statement was cut by the shutdown: %v", err)
	}
	if _, err := busy.Exec(testCtx(t, 5*time.Second), "commit"); err != nil {
		t.Fatalf("commit during shutdown: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	err = busy.PgConn().WaitForNotification(ctx)
	cancel()
	wantCode(t, err, "57P01")

	if err := r.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if n := superInt(t, ti.Database, "select count(*) from shutdown_probe"); n != 1 {
		t.Errorf("the transaction running at shutdown was not committed (%d rows)", n)
	}
	if _, err := connectCfg(t, connConfig(t, r.dsn("acme", "connect_timeout=2"))); err == nil {
		t.Errorf("router accepted a connection after shutdown")
	}
	// Serve has returned: no session, pump or cancel goroutine may remain.
	// Only the pool's maintenance goroutine lives on until Close.
	r.pool.Close()
	if err := goleak.Find(before); err != nil {
		t.Errorf("goroutines left after Serve returned: %v", err)
	}
}

// 11. pool_wait_timeout: a query that cannot get a backend in time gets an
// ERROR 53300, and the session stays usable.
func TestPoolWaitTimeout(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 1, "pool_wait_timeout": "200ms"}))
	a := r.connect(t, "acme")
	mustExec(t, a, "begin")
	mustExec(t, a, "select 1")

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		b := r.connect(t, "acme")
		for range 2 {
			_, err := b.Exec(testCtx(t, 10*time.Second), "select $1::int", mode, 1)
			pe := wantCode(t, err, "53300")
			if pe.Severity != "ERROR" {
				t.Errorf("%v: severity %s, want ERROR", mode, pe.Severity)
			}
			if b.PgConn().IsClosed() || b.PgConn().TxStatus() != 'I' {
				t.Fatalf("%v: session not usable after the pool timeout", mode)
			}
		}
		var got int
		if err := b.QueryRow(testCtx(t, 10*time.Second), "select $1::int", mode, 1).Scan(&got); err == nil {
			t.Fatalf("%v: got a backend although the only one is held", mode)
		}
		mustExec(t, a, "commit")
		if err := b.QueryRow(testCtx(t, 10*time.Second), "select $1::int", mode, 7).Scan(&got); err != nil || got != 7 {
			t.Fatalf("%v: after the backend became free: %v", mode, err)
		}
		mustExec(t, a, "begin")
		mustExec(t, a, "select 1")
	}
	mustExec(t, a, "commit")
}

// 12. max_client_connections per tenant: the next login gets FATAL 53300;
// other tenants are unaffected; a freed slot can be used again.
func TestTenantClientConnectionCap(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"max_client_connections": 2}))
	c1 := r.connect(t, "acme")
	r.connect(t, "acme")
	_, err := connectCfg(t, connConfig(t, r.dsn("acme")))
	pe := wantCode(t, err, "53300")
	if pe.Severity != "FATAL" {
		t.Errorf("severity %s, want FATAL", pe.Severity)
	}
	for range 3 {
		g := r.connect(t, "globex")
		if got := queryInt(t, g, "select 1"); got != 1 {
			t.Fatal("globex query failed")
		}
	}
	closeConn(c1)
	r.eventuallyLogsIn(t, "acme")
}

// 13. Backend errors pass through unchanged and leave the session usable;
// an error inside a transaction block needs ROLLBACK, as with PostgreSQL.
func TestBackendErrorsPassThrough(t *testing.T) {
	ti := tenants["acme"]
	r := startRouter(t)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		conn := r.connect(t, "acme")
		for range 2 {
			_, err := conn.Exec(testCtx(t, 10*time.Second), "select 1 / $1::int", mode, 0)
			pe := wantCode(t, err, "22012")
			if pe.Severity != "ERROR" || pe.Message != "division by zero" {
				t.Errorf("%v: %s %q", mode, pe.Severity, pe.Message)
			}
			if got := queryInt(t, conn, "select 5"); got != 5 {
				t.Fatalf("%v: session broken after an error", mode)
			}
		}

		mustExec(t, conn, "begin")
		_, err := conn.Exec(testCtx(t, 10*time.Second), "select 1 / $1::int", mode, 0)
		wantCode(t, err, "22012")
		if s := conn.PgConn().TxStatus(); s != 'E' {
			t.Fatalf("%v: tx status %q after an error in a transaction, want E", mode, s)
		}
		_, err = conn.Exec(testCtx(t, 10*time.Second), "select $1::int", mode, 1)
		wantCode(t, err, "25P02")
		mustExec(t, conn, "rollback")
		if s := conn.PgConn().TxStatus(); s != 'I' {
			t.Fatalf("%v: tx status %q after rollback", mode, s)
		}
		if got := queryInt(t, conn, "select 6"); got != 6 {
			t.Fatalf("%v: session broken after rollback", mode)
		}
	}

	// Every field of the backend's error arrives.
	conn := r.connect(t, "acme")
	mustExec(t, conn, "create table err_probe(id int primary key)")
	t.Cleanup(func() { _ = cluster.Exec(context.Background(), ti.Database, "drop table if exists err_probe") })
	mustExec(t, conn, "insert into err_probe values (1)")
	_, err := conn.Exec(testCtx(t, 10*time.Second), "insert into err_probe values (1)")
	pe := wantCode(t, err, "23505")
	if pe.ConstraintName != "err_probe_pkey" || pe.TableName != "err_probe" || pe.SchemaName != "public" ||
		pe.Detail != "Key (id)=(1) already exists." || pe.File == "" || pe.Routine == "" {
		t.Errorf("error fields lost on the way: %+v", pe)
	}
}

// 14. The client sees the backend's real ParameterStatus values.
func TestParameterStatusReplay(t *testing.T) {
	ti := tenants["acme"]
	r := startRouter(t)
	direct, err := pgx.Connect(testCtx(t, 10*time.Second), cluster.DSN(ti.User, ti.Password, ti.Database))
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn(direct)
	// Twice: the first login learns the parameters from a fresh dial, the
	// second gets the remembered ones.
	for i := range 2 {
		routed := r.connect(t, "acme")
		for _, k := range []string{"server_version", "server_encoding", "client_encoding", "standard_conforming_strings",
			"DateStyle", "IntervalStyle", "TimeZone", "integer_datetimes", "is_superuser", "session_authorization",
			"default_transaction_read_only", "in_hot_standby"} {
			want := direct.PgConn().ParameterStatus(k)
			got := routed.PgConn().ParameterStatus(k)
			if want == "" {
				t.Fatalf("the server itself does not report %s", k)
			}
			if got != want {
				t.Errorf("login %d: %s = %q through pgbridge, %q from the server", i, k, got, want)
			}
		}
		if got := queryString(t, routed, "show server_version"); got != routed.PgConn().ParameterStatus("server_version") {
			t.Errorf("server_version %q differs from SHOW server_version %q", routed.PgConn().ParameterStatus("server_version"), got)
		}
	}
}
