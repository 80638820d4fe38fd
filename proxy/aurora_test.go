package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgbridge/pgbridge/internal/pgtest"
)

// Issue 6 against the real cluster: reload under load, resume after an
// outage, restart under load, a writer turned read-only, auto-pause.

func TestReloadUnderLoad(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"max_client_connections": 100}))
	// umbrella starts unconfigured; it is added by the reload.
	delete(r.doc["tenants"].(cfgMap), "umbrella")
	r.reload(t, func(cfgMap) {})
	if _, err := connectCfg(t, connConfig(t, r.dsn("umbrella"))); err == nil {
		t.Fatal("umbrella served before it was added")
	}
	victim := r.connect(t, "initech")
	inTx := r.connect(t, "initech")
	mustExec(t, inTx, "begin")
	mustExec(t, inTx, "select 1")

	const clients = 32
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var errs atomic.Int64
	var firstErr atomic.Value
	var queries atomic.Int64
	for range clients {
		conn := r.connect(t, "acme")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var n int
				if err := conn.QueryRow(ctx, "select $1::int", i).Scan(&n); err != nil || n != i {
					if ctx.Err() != nil {
						return
					}
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint(err))
					return
				}
				queries.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	r.reload(t, func(m cfgMap) {
		ts := m["tenants"].(cfgMap)
		ts["umbrella"] = baseConfig()["tenants"].(cfgMap)["umbrella"]
		ts["acme"].(cfgMap)["max_client_connections"] = clients // lowered to what is connected
		delete(ts, "initech")
	})
	// The added tenant works at once.
	if n := queryInt(t, r.connect(t, "umbrella"), "select 41 + 1"); n != 42 {
		t.Errorf("umbrella: %d", n)
	}
	// The removed tenant's idle client is ended with 57P01, its client in a
	// transaction finishes the transaction first.
	_, err := victim.Exec(testCtx(t, 5*time.Second), "select 1")
	if pe := wantCode(t, err, "57P01"); !strings.Contains(pe.Message, `tenant "initech"`) {
		t.Errorf("message %q", pe.Message)
	}
	mustExec(t, inTx, "select 2")
	mustExec(t, inTx, "commit")
	_, err = inTx.Exec(testCtx(t, 5*time.Second), "select 1")
	wantCode(t, err, "57P01")
	_, err = connectCfg(t, connConfig(t, r.dsn("initech")))
	wantCode(t, err, "28P01") // its logins are gone with it
	// The lowered cap refuses a 33rd acme client; the 32 keep running.
	_, err = connectCfg(t, connConfig(t, r.dsn("acme")))
	wantCode(t, err, "53300")
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	if n := errs.Load(); n != 0 {
		t.Fatalf("%d acme clients failed during the reload, first: %v", n, firstErr.Load())
	}
	if queries.Load() < clients {
		t.Fatalf("only %d queries ran", queries.Load())
	}
	t.Logf("%d acme queries, no errors, across the reload", queries.Load())
}

func TestQueryWaitsForTheBackendToComeBack(t *testing.T) {
	r := startRouter(t, cfgMap{"backend": cfgMap{"resume_timeout": "30s"}})
	conn := r.connect(t, "acme")
	mustExec(t, conn, "select 1") // the pool holds a connection that will die
	if err := cluster.StopServer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.StartServer() })
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		var n int
		err := conn.QueryRow(testCtx(t, 30*time.Second), "select 7").Scan(&n)
		if err == nil && n != 7 {
			err = fmt.Errorf("got %d", n)
		}
		done <- err
	}()
	time.Sleep(3 * time.Second)
	if err := cluster.StartServer(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("query across the outage: %v", err)
	}
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("query finished in %s, before the backend was back", took)
	}
}

func TestBackendDownPastResumeTimeout(t *testing.T) {
	r := startRouter(t, cfgMap{"backend": cfgMap{"resume_timeout": "1500ms", "connect_timeout": "1s"}})
	conn := r.connect(t, "acme")
	mustExec(t, conn, "select 1")
	if err := cluster.StopServer(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cluster.StartServer(); err != nil {
			t.Fatal(err)
		}
	}()
	_, err := conn.Exec(testCtx(t, 20*time.Second), "select 1")
	pe := wantCode(t, err, "08006")
	if !strings.Contains(pe.Message, "cannot reach the database backend") {
		t.Errorf("message %q", pe.Message)
	}
	eventually(t, 5*time.Second, "the close counted", func() bool { return r.counter("acme", "close", "backend_lost") == 1 })
}

// TestClusterStartingUpPastResumeTimeout: a cluster that answers every
// login with "the database system is starting up" (as PostgreSQL does
// while it recovers) for longer than resume_timeout gives the client that
// error, 57P03, once the dials have retried; not the generic 08006. The
// backend is a fake: PostgreSQL cannot be held in that state on demand.
func TestClusterStartingUpPastResumeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var logins atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [4]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				n := int(binary.BigEndian.Uint32(hdr[:]))
				if n < 8 || n > 10000 {
					return
				}
				if _, err := io.ReadFull(c, make([]byte, n-4)); err != nil {
					return
				}
				logins.Add(1)
				msg, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL",
					Code: "57P03", Message: "the database system is starting up"}).Encode(nil)
				_, _ = c.Write(msg)
			}()
		}
	}()
	r := startRouter(t, cfgMap{"backend": cfgMap{
		"host": "127.0.0.1", "port": ln.Addr().(*net.TCPAddr).Port,
		"resume_timeout": "1500ms", "connect_timeout": "1s",
	}})
	_, err = connectCfg(t, connConfig(t, r.dsn("acme")))
	pe := wantCode(t, err, "57P03")
	if pe.Severity != "FATAL" || !strings.Contains(pe.Message, "starting up") {
		t.Errorf("error %s %q", pe.Severity, pe.Message)
	}
	if n := logins.Load(); n < 2 {
		t.Errorf("%d login attempts at the cluster, want retries until resume_timeout", n)
	}
}

func TestRestartUnderLoadRecovers(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 8}))
	const clients = 16
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var mu sync.Mutex
	var restartAt time.Time
	var errTimes []time.Time
	var okAfter []time.Time
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn *pgx.Conn
			for ctx.Err() == nil {
				if conn == nil {
					c, err := pgx.ConnectConfig(ctx, connConfig(t, r.dsn("acme")))
					if err != nil {
						mu.Lock()
						errTimes = append(errTimes, time.Now())
						mu.Unlock()
						time.Sleep(50 * time.Millisecond)
						continue
					}
					conn = c
				}
				_, err := conn.Exec(ctx, "select pg_sleep(0.01)")
				mu.Lock()
				if err != nil && ctx.Err() == nil {
					errTimes = append(errTimes, time.Now())
					if conn.IsClosed() || isFatal(err) {
						closeConn(conn)
						conn = nil
					}
				} else if err == nil && !restartAt.IsZero() {
					okAfter = append(okAfter, time.Now())
				}
				mu.Unlock()
			}
			if conn != nil {
				closeConn(conn)
			}
		}()
	}
	time.Sleep(time.Second)
	mu.Lock()
	restartAt = time.Now()
	mu.Unlock()
	if err := cluster.Restart(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	time.Sleep(6 * time.Second)
	stop()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	var late int
	for _, e := range errTimes {
		if e.Before(restartAt) {
			t.Errorf("error before the restart at %s", e)
		}
		if e.After(back.Add(5 * time.Second)) {
			late++
		}
	}
	if late > 0 {
		t.Errorf("%d errors more than 5s after the server was back", late)
	}
	recovered := 0
	for _, ok := range okAfter {
		if ok.After(back.Add(5*time.Second)) && ok.Before(back.Add(6*time.Second)) {
			recovered++
		}
	}
	if recovered < clients {
		t.Errorf("only %d queries in the 6th second after the restart", recovered)
	}
	t.Logf("restart: %d errors (all within the restart window), %d queries after it, load recovered", len(errTimes), len(okAfter))
}

func isFatal(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Severity == "FATAL"
}

func TestReadOnlyBackendIsDropped(t *testing.T) {
	const table = "ro_probe"
	r := startRouter(t, tenantOverride("acme", cfgMap{"pool_size": 4}))
	setup := r.connect(t, "acme")
	mustExec(t, setup, "create table if not exists "+table+" (v int)")

	// Fill the pool with four connections and note their PIDs.
	conns := make([]*pgx.Conn, 4)
	for i := range conns {
		conns[i] = r.connect(t, "acme")
	}
	hold := func() []int64 { // run one transaction on each at once, return the backend PIDs
		pids := make([]int64, len(conns))
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.QueryRow(testCtx(t, 10*time.Second), "select pg_backend_pid() from pg_sleep(0.2)").Scan(&pids[i])
			}()
		}
		wg.Wait()
		return pids
	}
	before := hold()

	ctx := testCtx(t, 10*time.Second)
	if err := cluster.Exec(ctx, "postgres", "ALTER SYSTEM SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	reset := func() {
		_ = cluster.Exec(context.Background(), "postgres", "ALTER SYSTEM RESET default_transaction_read_only")
		_ = cluster.Reload()
	}
	t.Cleanup(reset)
	if err := cluster.Reload(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the server to turn read-only", func() bool {
		return superInt(t, "postgres", "select case when current_setting('default_transaction_read_only') = 'on' then 1 else 0 end") == 1
	})
	// The first write fails like on the old writer after a failover...
	_, err := conns[0].Exec(testCtx(t, 5*time.Second), "insert into "+table+" values (1)")
	wantCode(t, err, "25006")
	// ...and every connection opened before is checked before its next
	// use: the read-only ones are dropped.
	for range 3 {
		hold()
	}
	reset()
	eventually(t, 5*time.Second, "the server to be writable", func() bool {
		return superInt(t, "postgres", "select case when current_setting('default_transaction_read_only') = 'off' then 1 else 0 end") == 1
	})
	for _, c := range conns {
		mustExec(t, c, "insert into "+table+" values (2)")
	}
	for _, pid := range before {
		if n := superInt(t, "postgres", "select count(*) from pg_stat_activity where pid = $1", pid); n != 0 {
			t.Errorf("backend %d from before the read-only period is still open", pid)
		}
	}
}

func TestIdleRouterLetsTheClusterPause(t *testing.T) {
	r := startRouter(t, cfgMap{"backend": cfgMap{"idle_timeout": "500ms"}}, tenantOverride("acme", cfgMap{"min_pool_size": 0}))
	conns := make([]*pgx.Conn, 4)
	for i := range conns {
		conns[i] = r.connect(t, "acme")
		mustExec(t, conns[i], "select 1")
	}
	count := func() int64 {
		return superInt(t, "postgres", "select count(*) from pg_stat_activity where application_name = 'pgbridge' and datname = $1", tenants["acme"].Database)
	}
	if count() == 0 {
		t.Fatal("no pgbridge backend while clients work")
	}
	// Clients stay connected but idle: the router holds no backend.
	eventually(t, 10*time.Second, "zero pgbridge backends", func() bool { return count() == 0 })
	if open, _ := r.pool.Budget(); open != 0 {
		t.Errorf("pool still counts %d connections", open)
	}
	if n := queryInt(t, conns[0], "select 5"); n != 5 {
		t.Errorf("after the pause: %d", n)
	}
}

// A reload with a new certificate applies to new connections; the
// connection made before keeps working.
func TestReloadSwapsTheClientCertificate(t *testing.T) {
	first, err := pgtest.GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	second, err := pgtest.GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tlsOf := func(c pgtest.Certs) cfgMap {
		return cfgMap{"cert_file": c.CertFile, "key_file": c.KeyFile, "mode": "allow"}
	}
	r := startRouter(t, cfgMap{"listen": cfgMap{"tls": tlsOf(first)}})
	old := r.connect(t, "acme", "sslmode=verify-full", "sslrootcert="+first.CAFile)
	r.reload(t, func(m cfgMap) { m["listen"].(cfgMap)["tls"] = tlsOf(second) })

	if _, err := connectCfg(t, connConfig(t, r.dsn("acme", "sslmode=verify-full", "sslrootcert="+first.CAFile))); err == nil {
		t.Error("a new connection still got the old certificate")
	}
	r.connect(t, "acme", "sslmode=verify-full", "sslrootcert="+second.CAFile)
	if n := queryInt(t, old, "select 3"); n != 3 {
		t.Errorf("the connection from before the reload: %d", n)
	}
	// A certificate that cannot be loaded any more when the proxy swaps it
	// (replaced between the load and the swap) is refused; nothing changes.
	third, err := pgtest.GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustParseWith(t, r, func(m cfgMap) { m["listen"].(cfgMap)["tls"] = tlsOf(third) })
	if err := os.Remove(third.CertFile); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.Reload(cfg); err == nil {
		t.Error("a missing certificate was accepted")
	}
	r.connect(t, "acme", "sslmode=verify-full", "sslrootcert="+second.CAFile)
}
