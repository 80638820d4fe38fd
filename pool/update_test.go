package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgbridge/pgbridge/routing"
)

func TestUpdateRemovesTenant(t *testing.T) {
	cfg := config(10,
		tenantSpec{name: "a", poolSize: 2},
		tenantSpec{name: "b", poolSize: 2})
	m, _ := newManager(t, cfg)
	a1 := acquire(t, m, "a")
	m.Release(a1) // idle, must survive
	b1, b2 := acquire(t, m, "b"), acquire(t, m, "b")
	res := make(chan result, 1)
	acquireAsync(context.Background(), m, "b", res)
	eventually(t, "b waiting", waiting(m, "b", 1))

	next := config(10,
		tenantSpec{name: "a", poolSize: 2},
		tenantSpec{name: "c", poolSize: 1})
	next.Tenants["a"] = cfg.Tenants["a"] // unchanged
	m.Update(next)

	if r := recv(t, res); !errors.Is(r.err, ErrTenantRemoved) {
		t.Fatalf("b's waiter: %v, want ErrTenantRemoved", r.err)
	}
	if _, err := m.Acquire(context.Background(), "b"); !errors.Is(err, ErrTenantRemoved) {
		t.Fatalf("Acquire(b) after removal: %v", err)
	}
	if _, ok := m.Stats()["b"]; ok {
		t.Fatal("a removed tenant is still listed in Stats")
	}
	if open, _ := m.Budget(); open != 3 {
		t.Fatalf("budget open = %d, want 3 (b's two in use still count)", open)
	}
	checkInvariants(t, m)
	checkPublic(t, m)

	// Added tenant works at once; the unchanged tenant keeps its idle
	// connection.
	m.Release(acquire(t, m, "c"))
	if got := acquire(t, m, "a"); got != a1 || isClosed(a1) {
		t.Fatal("an unchanged tenant's idle connection was not kept")
	}
	m.Release(a1)

	// In-use connections of the removed tenant close on Release.
	m.Release(b1)
	if !isClosed(b1) {
		t.Fatal("a removed tenant's connection went back to the pool")
	}
	if _, err := m.Acquire(context.Background(), "b"); !errors.Is(err, ErrTenantRemoved) {
		t.Fatalf("Acquire(b) with one connection left: %v", err)
	}
	m.Discard(b2)
	if _, err := m.Acquire(context.Background(), "b"); !errors.Is(err, ErrUnknownTenant) {
		t.Fatalf("Acquire(b) after its last connection: %v, want ErrUnknownTenant", err)
	}
	checkInvariants(t, m)
	checkPublic(t, m)
}

func TestUpdateRemovedTenantIdleAndDialing(t *testing.T) {
	m, d := newManager(t, config(10,
		tenantSpec{name: "a", poolSize: 2},
		tenantSpec{name: "b", poolSize: 2}))
	b1 := acquire(t, m, "b")
	m.Release(b1)
	gate := make(chan struct{})
	d.set(func(d *fakeDialer) { d.gate = gate })
	if c := acquire(t, m, "b"); c != b1 {
		t.Fatal("idle connection not reused")
	}
	// A caller that gives up while dialing leaves the dial running in the
	// background, for the pool.
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan result, 1)
	acquireAsync(ctx, m, "b", res) // dials, held at the gate
	eventually(t, "b dialing", func() bool { return m.Stats()["b"].Dialing == 1 })
	cancel()
	if r := recv(t, res); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v", r.err)
	}
	m.Release(b1) // idle again

	m.Update(config(10, tenantSpec{name: "a", poolSize: 2}))
	if !isClosed(b1) {
		t.Fatal("a removed tenant's idle connection was kept")
	}
	close(gate) // the dial in progress ends: its tenant is gone
	eventually(t, "the removed tenant's dial to settle", func() bool { open, _ := m.Budget(); return open == 0 })
	checkInvariants(t, m)
}

// A name removed and added again gets a fresh pool; the old pool's
// connections still close when released.
func TestUpdateRemoveThenAddAgain(t *testing.T) {
	specA, specB := tenantSpec{name: "a", poolSize: 2}, tenantSpec{name: "b", poolSize: 1}
	m, _ := newManager(t, config(2, specA, specB))
	old := acquire(t, m, "b")
	m.Update(config(2, specA))
	m.Update(config(2, specA, specB))
	c := acquire(t, m, "b") // the old connection still counts: budget 2/2
	if c == old {
		t.Fatal("old connection reused")
	}
	wantStats(t, m, "b", TenantStats{Open: 1, InUse: 1})
	m.Release(old)
	if !isClosed(old) {
		t.Fatal("old pool's connection not closed")
	}
	m.Release(c)
	wantStats(t, m, "b", TenantStats{Open: 1, Idle: 1})
}

func TestUpdateLimits(t *testing.T) {
	t.Run("lowered pool_size shrinks as connections come back", func(t *testing.T) {
		m, _ := newManager(t, config(10, tenantSpec{name: "a", poolSize: 4}))
		var held []*Conn
		for i := 0; i < 4; i++ {
			held = append(held, acquire(t, m, "a"))
		}
		m.Release(held[3])
		m.Update(config(10, tenantSpec{name: "a", poolSize: 2}))
		wantStats(t, m, "a", TenantStats{Open: 3, InUse: 3}) // the idle one closed at once
		m.Release(held[0])
		if !isClosed(held[0]) {
			t.Fatal("released above the new pool_size but kept")
		}
		m.Release(held[1])
		wantStats(t, m, "a", TenantStats{Open: 2, Idle: 1, InUse: 1})
		m.Release(held[2])
		wantStats(t, m, "a", TenantStats{Open: 2, Idle: 2})
	})

	t.Run("raised pool_size admits waiters at once", func(t *testing.T) {
		m, _ := newManager(t, config(10, tenantSpec{name: "a", poolSize: 1}))
		held := acquire(t, m, "a")
		res := make(chan result, 2)
		acquireAsync(context.Background(), m, "a", res)
		acquireAsync(context.Background(), m, "a", res)
		eventually(t, "waiters", waiting(m, "a", 2))
		m.Update(config(10, tenantSpec{name: "a", poolSize: 3}))
		for i := 0; i < 2; i++ {
			r := recv(t, res)
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer m.Release(r.c)
		}
		m.Release(held)
	})

	t.Run("lowered budget", func(t *testing.T) {
		m, _ := newManager(t, config(4,
			tenantSpec{name: "a", poolSize: 4},
			tenantSpec{name: "b", poolSize: 2}))
		a1, a2, a3 := acquire(t, m, "a"), acquire(t, m, "a"), acquire(t, m, "a")
		b1 := acquire(t, m, "b")
		m.Release(b1)
		m.Update(config(2,
			tenantSpec{name: "a", poolSize: 4},
			tenantSpec{name: "b", poolSize: 2}))
		if !isClosed(b1) {
			t.Fatal("idle connection beyond the lowered budget kept")
		}
		m.Release(a1)
		if !isClosed(a1) {
			t.Fatal("released beyond the lowered budget but kept")
		}
		m.Release(a2)
		if isClosed(a2) {
			t.Fatal("closed although the budget has room again")
		}
		if open, limit := m.Budget(); open != 2 || limit != 2 {
			t.Fatalf("budget %d/%d", open, limit)
		}
		m.Release(a3)
	})

	t.Run("raised budget admits waiters at once", func(t *testing.T) {
		specs := []tenantSpec{{name: "a", poolSize: 2}, {name: "b", poolSize: 2}}
		m, _ := newManager(t, config(1, specs...))
		held := acquire(t, m, "a")
		res := make(chan result, 2)
		acquireAsync(context.Background(), m, "a", res)
		acquireAsync(context.Background(), m, "b", res)
		eventually(t, "waiters", func() bool { s := m.Stats(); return s["a"].Waiting == 1 && s["b"].Waiting == 1 })
		m.Update(config(3, specs...))
		for i := 0; i < 2; i++ {
			r := recv(t, res)
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer m.Release(r.c)
		}
		m.Release(held)
	})

	t.Run("raised wait timeout applies to new waits", func(t *testing.T) {
		m, _ := newManager(t, config(10, tenantSpec{name: "a", poolSize: 1, wait: 10 * time.Millisecond}))
		held := acquire(t, m, "a")
		if _, err := m.Acquire(context.Background(), "a"); !errors.Is(err, ErrWaitTimeout) {
			t.Fatal(err)
		}
		m.Update(config(10, tenantSpec{name: "a", poolSize: 1, wait: time.Minute}))
		res := make(chan result, 1)
		acquireAsync(context.Background(), m, "a", res)
		eventually(t, "waiting", waiting(m, "a", 1))
		time.Sleep(30 * time.Millisecond) // well past the old timeout
		m.Release(held)
		if r := recv(t, res); r.err != nil || r.c != held {
			t.Fatalf("waiter: %v", r.err)
		}
		m.Release(held)
	})
}

// A reserve raised by Update while other tenants hold the budget is
// restored as they release: the tenant below its reserve is served before
// everyone else's waiters.
func TestUpdateRaisedReserveServedFirst(t *testing.T) {
	specA, specB := tenantSpec{name: "a", poolSize: 3}, tenantSpec{name: "b", poolSize: 3}
	m, d := newManager(t, config(3, specA, specB))
	a1, a2, b1 := acquire(t, m, "a"), acquire(t, m, "a"), acquire(t, m, "b")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	others := make(chan result, 2)
	acquireAsync(ctx, m, "a", others)
	acquireAsync(ctx, m, "b", others)
	eventually(t, "a and b waiting", func() bool { s := m.Stats(); return s["a"].Waiting == 1 && s["b"].Waiting == 1 })

	m.Update(config(3, specA, specB, tenantSpec{name: "c", poolSize: 2, reserve: 2}))
	cres := make(chan result, 2)
	acquireAsync(context.Background(), m, "c", cres)
	acquireAsync(context.Background(), m, "c", cres)
	eventually(t, "c waiting", waiting(m, "c", 2))
	checkInvariants(t, m)

	m.Release(a1)
	m.Release(b1) // b's own waiter would get it, but c is below its reserve
	for i := 0; i < 2; i++ {
		if r := recv(t, cres); r.err != nil {
			t.Fatal(r.err)
		} else {
			defer m.Release(r.c)
		}
	}
	if !isClosed(a1) || !isClosed(b1) || d.count("c") != 2 {
		t.Fatalf("a1 closed %v, b1 closed %v, c dials %d", isClosed(a1), isClosed(b1), d.count("c"))
	}
	select {
	case r := <-others:
		t.Fatalf("%s's waiter served before c's reserve was restored", r.tenant)
	default:
	}
	cancel()
	for i := 0; i < 2; i++ {
		recv(t, others)
	}
	m.Release(a2)
}

func TestUpdateDialSettings(t *testing.T) {
	t.Run("tenant credentials", func(t *testing.T) {
		specs := []tenantSpec{{name: "a", poolSize: 3}, {name: "b", poolSize: 3}}
		cfg := config(10, specs...)
		m, d := newManager(t, cfg)
		aIdle, aBusy := acquire(t, m, "a"), acquire(t, m, "a")
		m.Release(aIdle)
		bIdle := acquire(t, m, "b")
		m.Release(bIdle)

		next := config(10, specs...)
		next.Tenants["a"].BackendPassword = "rotated"
		next.Tenants["b"] = cfg.Tenants["b"]
		m.Update(next)
		if !isClosed(aIdle) || isClosed(aBusy) || isClosed(bIdle) {
			t.Fatalf("closed: a idle %v, a busy %v, b idle %v; want a's idle only",
				isClosed(aIdle), isClosed(aBusy), isClosed(bIdle))
		}
		m.Release(aBusy)
		if !isClosed(aBusy) {
			t.Fatal("a connection dialed with the old password went back to the pool")
		}
		c := acquire(t, m, "a")
		if d.count("a") != 3 {
			t.Fatalf("a dials = %d, want 3", d.count("a"))
		}
		m.Release(c)
		if got := acquire(t, m, "b"); got != bIdle {
			t.Fatal("unchanged tenant's connection not reused")
		}
		m.Release(bIdle)
	})

	t.Run("statement_timeout is a startup parameter", func(t *testing.T) {
		m, _ := newManager(t, config(10, tenantSpec{name: "a", poolSize: 1}))
		c := acquire(t, m, "a")
		m.Release(c)
		next := config(10, tenantSpec{name: "a", poolSize: 1})
		next.Tenants["a"].Policy.StatementTimeout = time.Second
		m.Update(next)
		if !isClosed(c) {
			t.Fatal("connection with the old statement_timeout kept")
		}
	})

	t.Run("backend endpoint closes every tenant's idle", func(t *testing.T) {
		specs := []tenantSpec{{name: "a", poolSize: 1}, {name: "b", poolSize: 1}}
		m, _ := newManager(t, config(10, specs...))
		a, b := acquire(t, m, "a"), acquire(t, m, "b")
		m.Release(a)
		next := config(10, specs...)
		next.Backend.Host = "new-writer.invalid"
		m.Update(next)
		if !isClosed(a) {
			t.Fatal("idle connection to the old endpoint kept")
		}
		m.Release(b)
		if !isClosed(b) {
			t.Fatal("in-use connection to the old endpoint went back to the pool")
		}
	})

	t.Run("limits only: nothing closes", func(t *testing.T) {
		m, _ := newManager(t, config(10, tenantSpec{name: "a", poolSize: 2}))
		c := acquire(t, m, "a")
		m.Release(c)
		next := config(20, tenantSpec{name: "a", poolSize: 5, minSize: 1, reserve: 1})
		next.Backend.IdleTimeout = time.Hour
		next.Backend.ConnectTimeout = 3 * time.Second
		m.Update(next)
		if got := acquire(t, m, "a"); got != c || isClosed(c) {
			t.Fatal("a limits-only change closed a connection")
		}
		m.Release(c)
	})

	t.Run("dial in progress is redone", func(t *testing.T) {
		m, d := newManager(t, config(10, tenantSpec{name: "a", poolSize: 1}))
		gate := make(chan struct{})
		d.set(func(d *fakeDialer) { d.gate = gate })
		res := make(chan result, 1)
		acquireAsync(context.Background(), m, "a", res)
		eventually(t, "dialing", func() bool { return d.count("a") == 1 })
		next := config(10, tenantSpec{name: "a", poolSize: 1})
		next.Tenants["a"].BackendUser = "new_user"
		m.Update(next)
		close(gate)
		r := recv(t, res)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if d.count("a") != 2 {
			t.Fatalf("dials = %d, want 2 (the first with old settings redone)", d.count("a"))
		}
		m.Release(r.c)
		wantStats(t, m, "a", TenantStats{Open: 1, Idle: 1})
	})
}

func TestUpdateAfterClose(t *testing.T) {
	d := newFakeDialer()
	m := New(config(1, tenantSpec{name: "a", poolSize: 1}), WithDialer(d), withInterval(time.Hour))
	m.Close()
	m.Update(config(5, tenantSpec{name: "b", poolSize: 1}))
	if _, err := m.Acquire(context.Background(), "b"); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	d.waitClosed(t)
}

// An Update keeps a *PgconnDialer's seams but gives it the new backend.
func TestUpdateRebindsPgconnDialer(t *testing.T) {
	lookup := toLoopback(nil)
	cfg := config(1, tenantSpec{name: "a", poolSize: 1})
	m := New(cfg, WithDialer(&PgconnDialer{Backend: cfg.Backend, LookupFunc: lookup}), withInterval(time.Hour))
	defer m.Close()
	next := config(1, tenantSpec{name: "a", poolSize: 1})
	next.Backend.Host = "elsewhere.invalid"
	next.Backend.TLS = routing.BackendTLS{Mode: routing.BackendTLSRequire}
	m.Update(next)
	m.mu.Lock()
	pd := m.dialer.(*PgconnDialer)
	m.mu.Unlock()
	if pd.Backend.Host != "elsewhere.invalid" || pd.Backend.TLS.Mode != routing.BackendTLSRequire || pd.LookupFunc == nil {
		t.Fatalf("dialer after Update: %+v", pd.Backend)
	}
}
