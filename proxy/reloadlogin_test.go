package proxy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A login whose tenant is removed (and added back) by reloads while the
// login is in its SCRAM exchange must not be registered under the removed
// tenant's state: such a session was never drained, and the console's
// KILL and PAUSE, the tenant's max_client_connections and later limit
// changes no longer reached it. It is refused with 57P01 like any session
// of a removed tenant.
func TestLoginRacingReloadThatRemovesItsTenant(t *testing.T) {
	r := startRouter(t)
	cc, gc := gatedConfig(t, r.dsn("acme"))
	type result struct {
		c   *pgx.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := pgx.ConnectConfig(ctx, cc)
		res <- result{c, err}
	}()
	select {
	case <-gc.reached: // the login has looked up its tenant
	case <-time.After(10 * time.Second):
		t.Fatal("login did not reach its SASLResponse")
	}
	saved := r.doc["tenants"].(map[string]any)["acme"]
	r.reload(t, func(m cfgMap) { delete(m["tenants"].(map[string]any), "acme") })
	r.reload(t, func(m cfgMap) { m["tenants"].(map[string]any)["acme"] = saved })
	close(gc.gate)
	got := <-res
	if got.err == nil {
		defer closeConn(got.c)
		adm := r.admin(t)
		mustExec(t, adm, "KILL acme")
		_, err := got.c.Exec(testCtx(t, 5*time.Second), "select 1")
		t.Fatalf("login of a tenant removed during its exchange was let in; after KILL acme its query gave %v", err)
	}
	var pe *pgconn.PgError
	if !errors.As(got.err, &pe) || pe.Code != "57P01" {
		t.Fatalf("login: %v, want 57P01", got.err)
	}
}
