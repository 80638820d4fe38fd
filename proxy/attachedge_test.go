package proxy_test

import (
	"context"

	"github.com/jackc/pgx/v5"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgbridge/pgbridge/proxy"
)

// A client whose statement waited out a PAUSE longer than
// client_idle_timeout is not idle once its wait ends: the router is
// readying a backend for it (applyParams' round trip, stretched here by a
// hook). client_idle_timeout must not end it then.
func TestClientIdleTimeoutSparesARequestReadyingItsBackend(t *testing.T) {
	var armed atomic.Bool
	hook := proxy.WithHook(func(at proxy.HookPoint) {
		if at == proxy.HookAcquired && armed.CompareAndSwap(true, false) {
			time.Sleep(150 * time.Millisecond) // several watchdog ticks
		}
	})
	r := startRouterWith(t, []proxy.Option{hook}, tenantOverride("acme", cfgMap{
		"client_idle_timeout": "300ms", "pool_wait_timeout": "5s"}))
	adm := r.admin(t)
	conn := r.connect(t, "acme")
	mustExec(t, adm, "PAUSE acme")
	done := runAsync(conn, "select 1")
	time.Sleep(700 * time.Millisecond) // waiting, not idle
	armed.Store(true)
	mustExec(t, adm, "RESUME acme")
	if err := <-done; err != nil {
		t.Fatalf("statement that waited out the PAUSE: %v", err)
	}
	if n := r.counter("acme", "close", "client_idle"); n != 0 {
		t.Errorf("client_idle closes = %d, want 0", n)
	}
}

// A backend readied for a session's parameters by a statement sent in
// front of its request (a set the tenant's backends took before) is not
// marked as carrying them when the request never goes out (the session
// ends as Acquire returns): the next session with those parameters would
// run with the server's defaults.
func TestParamsNotMarkedWhenTheirStatementNeverWentOut(t *testing.T) {
	var armed atomic.Bool
	var adm atomic.Pointer[pgx.Conn]
	hook := proxy.WithHook(func(at proxy.HookPoint) {
		if at == proxy.HookAcquired && armed.CompareAndSwap(true, false) {
			_, _ = adm.Load().Exec(context.Background(), "KILL acme") // the session ends as its wait does
		}
	})
	r := startRouterWith(t, []proxy.Option{hook})
	adm.Store(r.admin(t))
	a := r.connect(t, "acme", "timezone=Asia/Tokyo")
	if tz := queryString(t, a, "show timezone"); tz != "Asia/Tokyo" {
		t.Fatalf("a: timezone %q", tz)
	}
	mustExec(t, a, "begin") // a keeps its backend: b's is dialed fresh
	mustExec(t, a, "select 1")
	b := r.connect(t, "acme", "timezone=Asia/Tokyo")
	armed.Store(true)
	_, _ = b.Exec(context.Background(), "select 1")
	closeConn(b)
	closeConn(a)
	c := r.connect(t, "acme", "timezone=Asia/Tokyo")
	for i := 0; i < 3; i++ {
		if tz := queryString(t, c, "show timezone"); tz != "Asia/Tokyo" {
			t.Fatalf("c asked for Asia/Tokyo, runs with %q", tz)
		}
	}
}
