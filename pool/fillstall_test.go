package pool

import (
	"context"
	"testing"
	"time"

	"github.com/pgbridge/pgbridge/routing"
)

// stallDialer hangs every dial of one tenant until its context ends (a
// backend that accepts TCP but never finishes the login, or keeps
// answering 53300 within resume_timeout); other tenants' dials go to next.
type stallDialer struct {
	next   Dialer
	tenant string
}

func (s *stallDialer) Dial(ctx context.Context, t *routing.Tenant) (*Conn, error) {
	if t.Name == s.tenant {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.next.Dial(ctx, t)
}

// The maintenance round is the only thing that hands a cold idle slot to
// a tenant already waiting ("Once cold, the maintenance round (at most a
// second later) closes it and grants the slot to a waiting tenant"). But
// fill() dials for min_pool_size synchronously inside that round, so one
// tenant's hanging min_pool_size dial stops every round - reaping,
// max_lifetime and the hand-over - for up to connect_timeout (times the
// retries within resume_timeout).
var stallTenant = "x"

func TestSlowFillDoesNotStallHandOver(t *testing.T) {
	cfg := config(2,
		tenantSpec{name: "x", poolSize: 1, minSize: 1},
		tenantSpec{name: "b", poolSize: 10, wait: 3 * time.Second},
		tenantSpec{name: "c", poolSize: 10})
	cfg.Backend.ConnectTimeout = 10 * time.Second
	d := newFakeDialer()
	m, _ := newManager(t, cfg, withInterval(20*time.Millisecond), WithDialer(&stallDialer{next: d, tenant: stallTenant}))
	eventually(t, "x has its min_pool_size connection or dial", func() bool { return m.Stats()["x"].Open == 1 })

	c1 := acquire(t, m, "c")
	m.Release(c1) // idle and warm: c is within its share

	start := time.Now()
	b, err := m.Acquire(context.Background(), "b")
	if err != nil {
		t.Fatalf("b waited %s for c's idle connection to go cold and be handed over: %v (stats %+v)",
			time.Since(start).Round(time.Millisecond), err, m.Stats())
	}
	t.Logf("b served after %s", time.Since(start).Round(time.Millisecond))
	m.Release(b)
}

// Control: the same with x's dial succeeding: b is served about a keepWarm later.
func TestHandOverWithQuickFill(t *testing.T) {
	stallTenant = "nobody"
	defer func() { stallTenant = "x" }()
	TestSlowFillDoesNotStallHandOver(t)
}
