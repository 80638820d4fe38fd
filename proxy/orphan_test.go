package proxy_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pgbridge/pgbridge/internal/stats"
)

// A session that ends while its statement runs must not leave the
// statement running on the cluster. The router gives up that backend and
// frees its pool slot, and closing the socket does not stop a statement
// (PostgreSQL notices a departed client only when it next reads or
// writes), so it would run on as a backend outside every budget.
func TestSessionEndedMidStatementCancelsIt(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		end        func(t *testing.T, r *router, hc interface{ Close() error })
	}{
		// The client vanishes (no CancelRequest, no Terminate). In session
		// mode the router sees it at once; in transaction mode it reads
		// the backend's answer first, as PostgreSQL itself would.
		{"client gone, session mode", "session", func(t *testing.T, r *router, c interface{ Close() error }) { _ = c.Close() }},
		// An SRE ends the tenant's sessions from the admin console.
		{"KILL, transaction mode", "transaction", func(t *testing.T, r *router, _ interface{ Close() error }) {
			mustExec(t, r.admin(t), "KILL acme")
		}},
		{"KILL, session mode", "session", func(t *testing.T, r *router, _ interface{ Close() error }) {
			mustExec(t, r.admin(t), "KILL acme")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRouter(t, tenantOverride("acme", cfgMap{"pool_mode": tc.mode}))
			ti := tenants["acme"]
			hc := hijack(t, r)
			probe := "orphan probe " + tc.name
			hc.Frontend.Send(&pgproto3.Query{String: "select pg_sleep(30) /* " + probe + " */"})
			if err := hc.Frontend.Flush(); err != nil {
				t.Fatal(err)
			}
			running := "select count(*) from pg_stat_activity where usename = $1 and state = 'active' and query like '%' || $2 || '%' and pid <> pg_backend_pid()"
			eventually(t, 10*time.Second, "the statement runs", func() bool {
				return superInt(t, ti.Database, running, ti.User, probe) == 1
			})
			tc.end(t, r, hc.Conn)
			eventually(t, 10*time.Second, "the statement stops", func() bool {
				return superInt(t, ti.Database, running, ti.User, probe) == 0
			})
			if n := r.counter("acme", "cancel", stats.CancelSessionEnd); n != 1 {
				t.Errorf("cancels_total{reason=session_end} = %d, want 1", n)
			}
			// Nothing else was cancelled: the tenant is served as before.
			conn := r.connect(t, "acme")
			if got := queryInt(t, conn, "select 1"); got != 1 {
				t.Fatalf("select 1: %d", got)
			}
		})
	}
}
