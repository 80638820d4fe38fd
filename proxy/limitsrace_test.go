package proxy_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgbridge/pgbridge/proxy"
)

// A statement sent inside a transaction that waits for a query_rate token
// is not idle in the transaction: the client sent it in time, and the
// router holds it. idle_in_transaction_timeout must not end the session
// while it waits.
func TestIdleInTransactionTimeoutSparesAQueryRateWait(t *testing.T) {
	r := startRouter(t, tenantOverride("acme", cfgMap{
		"query_rate": 1, "query_burst": 1, "pool_wait_timeout": "5s",
		"idle_in_transaction_timeout": "400ms"}))
	conn := r.connect(t, "acme")
	time.Sleep(1100 * time.Millisecond) // a full bucket
	mustExec(t, conn, "begin")          // takes the token
	start := time.Now()
	mustExec(t, conn, "select 1") // waits about a second for the next
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Logf("the statement did not wait (%s)", d)
	}
	mustExec(t, conn, "commit")
	if n := r.counter("acme", "close", "idle_in_transaction"); n != 0 {
		t.Errorf("idle_in_transaction closes = %d, want 0", n)
	}
}

// A burst of clients on a paused (stopped) cluster all wait for it to
// come back within backend.resume_timeout, not only the first two, whose
// dials are in flight: the rest, queued behind those dials
// (maxDialsPerTenant), must not get pool_wait_timeout's 53300 while the
// cluster resumes.
func TestBurstWaitsForTheClusterToResume(t *testing.T) {
	r := startRouter(t,
		cfgMap{"backend": cfgMap{"resume_timeout": "30s", "idle_timeout": "300ms"}},
		tenantOverride("acme", cfgMap{"min_pool_size": 0, "pool_wait_timeout": "1s"}))
	conns := coldClients(t, r, "acme", 5)
	if err := cluster.StopServer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.StartServer() })
	dones := runAllAsync(conns, "select 1")
	time.Sleep(2500 * time.Millisecond)
	if err := cluster.StartServer(); err != nil {
		t.Fatal(err)
	}
	for i, d := range dones {
		if err := <-d; err != nil {
			t.Errorf("client %d across the resume: %v", i, err)
		}
	}
}

// A resuming cluster may hold the first handshake (the connection accepted,
// no answer yet) for longer than pool_wait_timeout, without any dial
// failing and retrying. The clients queued behind the dials in flight wait
// with them all the same, nothing being busy: none gets 53300.
func TestBurstWaitsForAHeldFirstHandshake(t *testing.T) {
	fw := startForwarder(t, fmt.Sprintf("%s:%d", cluster.Host, cluster.Port))
	r := startRouter(t,
		cfgMap{"backend": cfgMap{"host": "127.0.0.1", "port": fw.port,
			"resume_timeout": "30s", "connect_timeout": "10s", "idle_timeout": "300ms"}},
		tenantOverride("acme", cfgMap{"min_pool_size": 0, "pool_wait_timeout": "1s"}))
	conns := coldClients(t, r, "acme", 5)
	release := fw.holdNew()
	t.Cleanup(release)
	dones := runAllAsync(conns, "select 1")
	eventually(t, 10*time.Second, "a dial held by the cluster", func() bool { return fw.held.Load() > 0 })
	time.Sleep(2500 * time.Millisecond) // well past pool_wait_timeout
	release()
	for i, d := range dones {
		if err := <-d; err != nil {
			t.Errorf("client %d across the held handshake: %v", i, err)
		}
	}
}

// A burst of clients on a cluster that stays down past resume_timeout
// gets the documented 08006 ("cannot reach the database backend"), also
// the clients queued behind the dials, not pool_wait_timeout's 53300.
func TestBurstOnAClusterDownPastResumeTimeout(t *testing.T) {
	r := startRouter(t,
		cfgMap{"backend": cfgMap{"resume_timeout": "1500ms", "connect_timeout": "1s", "idle_timeout": "300ms"}},
		tenantOverride("acme", cfgMap{"min_pool_size": 0, "pool_wait_timeout": "500ms"}))
	conns := coldClients(t, r, "acme", 5)
	if err := cluster.StopServer(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cluster.StartServer(); err != nil {
			t.Fatal(err)
		}
	}()
	dones := runAllAsync(conns, "select 1")
	errs := make([]error, len(dones))
	for i, d := range dones {
		errs[i] = <-d // (all of them before a Fatal closes the connections)
	}
	for _, err := range errs {
		wantCode(t, err, "08006")
	}
}

// A COMMIT that reaches the router just as idle_in_transaction_timeout
// decides to end the session must not run: the client is told 25P03
// (terminating, the transaction lost), so the transaction must not have
// committed behind its back.
func TestIdleInTransactionTimeoutRacingACommit(t *testing.T) {
	const table = "guard_iit_race"
	g := newGuardGate()
	r := startRouterWith(t, []proxy.Option{g.option()}, tenantOverride("acme", cfgMap{"idle_in_transaction_timeout": "300ms"}))
	setup := r.connect(t, "acme")
	mustExec(t, setup, "create table if not exists "+table+" (v int)")
	mustExec(t, setup, "truncate "+table)
	// Its COMMIT takes a second (a deferred trigger), so the session's end
	// comes while it runs.
	mustExec(t, setup, "create or replace function "+table+"_slow() returns trigger language plpgsql as $$ begin perform pg_sleep(1); return null; end $$")
	mustExec(t, setup, "drop trigger if exists "+table+"_slow on "+table)
	mustExec(t, setup, "create constraint trigger "+table+"_slow after insert on "+table+
		" deferrable initially deferred for each row execute function "+table+"_slow()")

	conn := r.connect(t, "acme")
	mustExec(t, conn, "begin")
	mustExec(t, conn, "insert into "+table+" values (1)")
	g.await(t, "idle_in_transaction_timeout")
	g.settle(t, runAsync(conn, "commit"), "25P03", func() int64 {
		return queryInt(t, setup, "select count(*) from "+table)
	})
}

// The same for client_idle_timeout: a statement that arrives as the limit
// ends the session does not run (on a fresh backend) behind the 57P05.
func TestClientIdleTimeoutRacingAStatement(t *testing.T) {
	const table = "guard_idle_race"
	g := newGuardGate()
	r := startRouterWith(t, []proxy.Option{g.option()}, tenantOverride("acme", cfgMap{"client_idle_timeout": "300ms"}))
	setup := r.connect(t, "acme")
	mustExec(t, setup, "create table if not exists "+table+" (v int)")
	mustExec(t, setup, "truncate "+table)
	closeConn(setup) // (idle too: the hook is for conn's end)
	conn := r.connect(t, "acme")
	g.await(t, "client_idle_timeout")
	done := runAsync(conn, "insert into "+table+" select 1 from pg_sleep(1)") // under way when the session ends
	g.settle(t, done, "57P05", func() int64 {
		return superInt(t, tenants["acme"].Database, "select count(*) from "+table)
	})
}

// guardGate holds, once armed, the first session end a guardrail decided
// (hookGuardEnd) until open: the client's next statement arrives while
// the session is being ended.
type guardGate struct {
	decided, release chan struct{}
	armed            atomic.Bool
}

func newGuardGate() *guardGate {
	return &guardGate{decided: make(chan struct{}, 1), release: make(chan struct{})}
}

func (g *guardGate) option() proxy.Option {
	return proxy.WithHook(func(at proxy.HookPoint) {
		if at == proxy.HookGuardEnd && g.armed.CompareAndSwap(true, false) {
			g.decided <- struct{}{}
			<-g.release
		}
	})
}

// await arms the gate and waits until the limit named what has fired.
func (g *guardGate) await(t *testing.T, what string) {
	t.Helper()
	g.armed.Store(true)
	select {
	case <-g.decided:
	case <-time.After(5 * time.Second):
		g.open()
		t.Fatal(what + " did not fire")
	}
}

func (g *guardGate) open() { close(g.release) }

// settle lets the session's end go on once the statement done reports has
// reached the router (and, unfixed, its backend), and checks that the
// statement took effect exactly when it succeeded: rows, counted once a
// statement under way on the backend had time to end, is 1 then and 0
// when it failed, with code.
func (g *guardGate) settle(t *testing.T, done <-chan error, code string, rows func() int64) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	g.open()
	err := <-done
	time.Sleep(1500 * time.Millisecond)
	n := rows()
	switch {
	case err != nil && n != 0:
		t.Errorf("the client got %v, yet its statement took effect", err)
	case err == nil && n != 1:
		t.Errorf("the statement succeeded, yet %d rows", n)
	}
	if err != nil {
		wantCode(t, err, code)
	}
}

// coldClients connects n clients of tenant and waits until the router holds
// no backend connection (the test's idle_timeout closed them): the next
// statements start a burst of dials.
func coldClients(t *testing.T, r *router, tenant string, n int) []*pgx.Conn {
	t.Helper()
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		conns[i] = r.connect(t, tenant)
	}
	eventually(t, 10*time.Second, "no backend open", func() bool {
		open, _ := r.pool.Budget()
		return open == 0
	})
	return conns
}

// runAllAsync sends sql on every connection at once (runAsync).
func runAllAsync(conns []*pgx.Conn, sql string) []<-chan error {
	dones := make([]<-chan error, len(conns))
	for i, c := range conns {
		dones[i] = runAsync(c, sql)
	}
	return dones
}
