package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgbridge/pgbridge/routing"
)

// limited is config with backend.max_active_transactions set.
func limited(maxActive, limit int, specs ...tenantSpec) *routing.Config {
	cfg := config(limit, specs...)
	cfg.Backend.MaxActiveTransactions = maxActive
	return cfg
}

func admitWaiting(m *Manager, tenant string, n int) func() bool {
	return func() bool { return m.Stats()[tenant].AdmitWaiting == n }
}

func wantActive(t *testing.T, m *Manager, want int, perTenant map[string]int) {
	t.Helper()
	if active, _ := m.ActiveTransactions(); active != want {
		t.Errorf("ActiveTransactions() = %d, want %d", active, want)
	}
	st := m.Stats()
	for name, n := range perTenant {
		if st[name].Active != n {
			t.Errorf("tenant %s: Active = %d, want %d", name, st[name].Active, n)
		}
	}
}

// A tenant alone may use the whole limit; beyond it, a transaction waits
// although the tenant has room to dial. It waits holding its connection.
func TestActiveLimitAdmitsUpToTheLimit(t *testing.T) {
	m, _ := newManager(t, limited(2, 10, tenantSpec{name: "a", poolSize: 5}))
	c1, c2 := acquire(t, m, "a"), acquire(t, m, "a")
	wantActive(t, m, 2, map[string]int{"a": 2})

	ch := make(chan result, 1)
	acquireAsync(context.Background(), m, "a", ch)
	eventually(t, "third transaction queued for admission", admitWaiting(m, "a", 1))
	select {
	case r := <-ch:
		t.Fatalf("third Acquire returned (%v) above the limit", r.err)
	case <-time.After(20 * time.Millisecond):
	}
	if st := m.Stats()["a"]; st.InUse != 3 || st.Idle != 0 {
		t.Errorf("waiting for admission: %+v, want its connection in use", st)
	}
	m.Release(c1)
	r := recv(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.c == c1 || r.c == c2 {
		t.Error("the admitted transaction got a connection another one held")
	}
	wantActive(t, m, 2, map[string]int{"a": 2})
	m.Release(r.c)
	m.Discard(c2)
	wantActive(t, m, 0, map[string]int{"a": 0})
	checkInvariants(t, m)
}

// At the limit, an ending transaction admits the waiting tenant that has
// the fewest active transactions, ahead of older waiters of a busier one.
func TestActiveLimitAdmitsTheLeastActiveTenantFirst(t *testing.T) {
	m, _ := newManager(t, limited(2, 10,
		tenantSpec{name: "busy", poolSize: 5}, tenantSpec{name: "quiet", poolSize: 5}))
	held := []*Conn{acquire(t, m, "busy"), acquire(t, m, "busy")}
	busy := make(chan result, 3)
	for i := 0; i < 3; i++ {
		acquireAsync(context.Background(), m, "busy", busy)
		eventually(t, "busy waiter queued", admitWaiting(m, "busy", i+1))
	}
	quiet := make(chan result, 1)
	acquireAsync(context.Background(), m, "quiet", quiet)
	eventually(t, "quiet waiter queued", admitWaiting(m, "quiet", 1))

	m.Release(held[0])
	q := recv(t, quiet)
	if q.err != nil {
		t.Fatal(q.err)
	}
	wantActive(t, m, 2, map[string]int{"busy": 1, "quiet": 1})
	if n := m.Stats()["busy"].AdmitWaiting; n != 3 {
		t.Errorf("busy tenant has %d waiters, want all 3 still queued", n)
	}
	// Equal counts now (1 each, only busy waits): busy's oldest waiter is
	// next.
	m.Release(q.c)
	b := recv(t, busy)
	if b.err != nil {
		t.Fatal(b.err)
	}
	m.Release(held[1])
	m.Release(recv(t, busy).c)
	m.Release(recv(t, busy).c)
	m.Release(b.c)
	wantActive(t, m, 0, map[string]int{"busy": 0, "quiet": 0})
}

func TestActiveLimitWaitEnds(t *testing.T) {
	m, d := newManager(t, limited(1, 10,
		tenantSpec{name: "a", poolSize: 5}, tenantSpec{name: "b", poolSize: 5, wait: 30 * time.Millisecond},
		tenantSpec{name: "c", poolSize: 5}))
	c := acquire(t, m, "a")

	// pool_wait_timeout covers the wait for admission.
	_, err := m.Acquire(context.Background(), "b")
	if !errors.Is(err, ErrAdmitTimeout) || !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("Acquire at the limit: %v, want ErrAdmitTimeout (an ErrWaitTimeout)", err)
	}
	// So does the caller's context.
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan result, 1)
	acquireAsync(ctx, m, "a", ch)
	eventually(t, "waiter queued", admitWaiting(m, "a", 1))
	cancel()
	if r := recv(t, ch); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v", r.err)
	}
	wantActive(t, m, 1, map[string]int{"a": 1, "b": 0})
	// The connections the two waited with went back to their pools.
	if st := m.Stats(); st["a"].Idle != 1 || st["a"].InUse != 1 || st["b"].Idle != 1 {
		t.Errorf("after the failed waits: %+v", st)
	}
	checkInvariants(t, m)

	// A failed dial is never admitted.
	m.Release(c)
	d.set(func(d *fakeDialer) { d.script = []error{errors.New("boom")} })
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := m.Acquire(ctx, "c"); err == nil {
		t.Fatal("Acquire with a failing dial succeeded")
	}
	wantActive(t, m, 0, nil)
	checkInvariants(t, m)
}

// Session-mode tenants are not counted; a pinned connection stops
// counting; Discard ends an admission like Release.
func TestActiveLimitCountsTransactionModeOnly(t *testing.T) {
	cfg := limited(1, 10, tenantSpec{name: "tx", poolSize: 5}, tenantSpec{name: "sess", poolSize: 5})
	cfg.Tenants["sess"].Policy.PoolMode = routing.PoolSession
	m, _ := newManager(t, cfg)
	s1, s2 := acquire(t, m, "sess"), acquire(t, m, "sess")
	wantActive(t, m, 0, map[string]int{"sess": 0})

	c := acquire(t, m, "tx")
	wantActive(t, m, 1, map[string]int{"tx": 1})
	m.Pinned(c)
	m.Pinned(c) // idempotent
	wantActive(t, m, 0, map[string]int{"tx": 0})
	c2 := acquire(t, m, "tx") // admitted: the pinned one no longer counts
	wantActive(t, m, 1, map[string]int{"tx": 1})
	m.Release(c) // a pinned connection released counts nothing twice
	wantActive(t, m, 1, map[string]int{"tx": 1})
	// At the limit, Probe (a login's own use) is not held back or counted.
	p, err := m.Probe(context.Background(), "tx")
	if err != nil {
		t.Fatalf("Probe at the limit: %v", err)
	}
	wantActive(t, m, 1, map[string]int{"tx": 1})
	m.Release(p)
	m.Discard(c2)
	wantActive(t, m, 0, map[string]int{"tx": 0})
	m.Release(s1)
	m.Release(s2)
}

// Update: a raised or lifted limit admits waiters; removing a tenant ends
// its waits with ErrTenantRemoved; Close ends the rest with ErrClosed.
func TestActiveLimitUpdateAndClose(t *testing.T) {
	cfg := limited(1, 10, tenantSpec{name: "a", poolSize: 5}, tenantSpec{name: "b", poolSize: 5})
	m, _ := newManager(t, cfg)
	held := acquire(t, m, "a")
	ch := make(chan result, 4)
	for i := 0; i < 3; i++ {
		acquireAsync(context.Background(), m, "a", ch)
	}
	eventually(t, "three waiters", admitWaiting(m, "a", 3))

	raised := limited(2, 10, tenantSpec{name: "a", poolSize: 5}, tenantSpec{name: "b", poolSize: 5})
	m.Update(raised)
	r := recv(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantActive(t, m, 2, map[string]int{"a": 2})
	eventually(t, "two still waiting", admitWaiting(m, "a", 2))

	lifted := limited(0, 10, tenantSpec{name: "a", poolSize: 5}, tenantSpec{name: "b", poolSize: 5})
	m.Update(lifted)
	r2, r3 := recv(t, ch), recv(t, ch)
	if r2.err != nil || r3.err != nil {
		t.Fatal(r2.err, r3.err)
	}
	checkInvariants(t, m)
	// Admissions granted before the limit was lifted still end cleanly.
	for _, c := range []*Conn{held, r.c, r2.c, r3.c} {
		m.Release(c)
	}
	wantActive(t, m, 0, map[string]int{"a": 0})

	m.Update(cfg) // back to a limit of 1
	held = acquire(t, m, "a")
	acquireAsync(context.Background(), m, "b", ch)
	eventually(t, "b waits", admitWaiting(m, "b", 1))
	onlyA := limited(1, 10, tenantSpec{name: "a", poolSize: 5})
	m.Update(onlyA)
	if r := recv(t, ch); !errors.Is(r.err, ErrTenantRemoved) {
		t.Fatalf("waiter of a removed tenant: %v", r.err)
	}
	acquireAsync(context.Background(), m, "a", ch)
	eventually(t, "a waits", admitWaiting(m, "a", 1))
	m.Close()
	if r := recv(t, ch); !errors.Is(r.err, ErrClosed) {
		t.Fatalf("waiter at Close: %v", r.err)
	}
	m.Release(held)
	wantActive(t, m, 0, nil)
}

// A transaction whose client has its turn (Idle) does not count; its next
// request counts again at once (Busy), even above the limit.
func TestActiveLimitIdleInTransaction(t *testing.T) {
	m, _ := newManager(t, limited(1, 10, tenantSpec{name: "a", poolSize: 5}, tenantSpec{name: "b", poolSize: 5}))
	a := acquire(t, m, "a")
	ch := make(chan result, 2)
	acquireAsync(context.Background(), m, "b", ch)
	eventually(t, "b waits", admitWaiting(m, "b", 1))

	m.Idle(a)
	m.Idle(a) // idempotent
	b := recv(t, ch)
	if b.err != nil {
		t.Fatal(b.err)
	}
	wantActive(t, m, 1, map[string]int{"a": 0, "b": 1})
	m.Busy(a)
	m.Busy(a)
	wantActive(t, m, 2, map[string]int{"a": 1, "b": 1})

	acquireAsync(context.Background(), m, "b", ch)
	eventually(t, "b waits again", admitWaiting(m, "b", 1))
	m.Release(b.c) // 1 still active: at the limit, the waiter stays
	if n := m.Stats()["b"].AdmitWaiting; n != 1 {
		t.Fatalf("b's waiter admitted above the limit (%d waiting)", n)
	}
	m.Idle(a)
	m.Release(a) // an idle transaction ending changes no count
	b2 := recv(t, ch)
	if b2.err != nil {
		t.Fatal(b2.err)
	}
	wantActive(t, m, 1, map[string]int{"a": 0, "b": 1})
	m.Idle(b2.c)
	m.Pinned(b2.c) // an idle one that pins: nothing left to count
	m.Busy(b2.c)   // no longer admitted
	wantActive(t, m, 0, map[string]int{"a": 0, "b": 0})
	m.Release(b2.c)
	checkInvariants(t, m)
}

// A transaction waiting for one of its tenant's connections holds no
// admission: another tenant with connections free runs meanwhile.
func TestActiveLimitConnectionBeforeAdmission(t *testing.T) {
	m, _ := newManager(t, limited(1, 10,
		tenantSpec{name: "a", poolSize: 1}, tenantSpec{name: "b", poolSize: 1, wait: time.Second}))
	a1 := acquire(t, m, "a")
	m.Idle(a1) // its client thinks, inside the transaction
	ch := make(chan result, 1)
	acquireAsync(context.Background(), m, "a", ch)
	eventually(t, "a waits for its only connection", func() bool { return m.Stats()["a"].Waiting == 1 })
	b := acquire(t, m, "b")
	wantActive(t, m, 1, map[string]int{"a": 0, "b": 1})
	m.Release(b)
	m.Release(a1)
	a2 := recv(t, ch)
	if a2.err != nil {
		t.Fatal(a2.err)
	}
	wantActive(t, m, 1, map[string]int{"a": 1, "b": 0})
	m.Release(a2.c)
	checkInvariants(t, m)
}

// A connection its caller keeps between transactions (a pinned session)
// stops counting at a transaction's end (Pinned); its next transaction is
// admitted by Readmit: at once below the limit, after a wait for a freed
// slot at it, and counted above the limit when the wait runs out. A
// connection discarded during the wait counts nothing, and the grant goes
// on to the next waiter.
func TestActiveLimitReadmit(t *testing.T) {
	m, _ := newManager(t, limited(1, 10,
		tenantSpec{name: "a", poolSize: 3}, tenantSpec{name: "b", poolSize: 3}))
	ctx := context.Background()
	a := acquire(t, m, "a")
	if err := m.Readmit(ctx, a, time.Hour); err != nil { // counted already
		t.Fatal(err)
	}
	wantActive(t, m, 1, map[string]int{"a": 1})
	m.Pinned(a)
	if err := m.Readmit(ctx, a, time.Hour); err != nil { // the limit is free
		t.Fatal(err)
	}
	wantActive(t, m, 1, map[string]int{"a": 1})
	m.Pinned(a)

	// At the limit: a short wait, then counted above it.
	b := acquire(t, m, "b")
	if err := m.Readmit(ctx, a, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	wantActive(t, m, 2, map[string]int{"a": 1, "b": 1})
	m.Pinned(a)
	wantActive(t, m, 1, map[string]int{"a": 0, "b": 1})

	// A slot freed during the wait admits it.
	ch := make(chan error, 1)
	go func() { ch <- m.Readmit(ctx, a, time.Hour) }()
	eventually(t, "a waits for admission", admitWaiting(m, "a", 1))
	m.Release(b)
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	wantActive(t, m, 1, map[string]int{"a": 1, "b": 0})
	m.Pinned(a)

	// The caller's context ends the wait, nothing counted.
	b = acquire(t, m, "b")
	cctx, cancel := context.WithCancel(ctx)
	go func() { ch <- m.Readmit(cctx, a, time.Hour) }()
	eventually(t, "a waits for admission", admitWaiting(m, "a", 1))
	cancel()
	if err := <-ch; !errors.Is(err, context.Canceled) {
		t.Fatalf("Readmit with its context cancelled: %v", err)
	}
	wantActive(t, m, 1, map[string]int{"a": 0, "b": 1})

	// Discarded while waiting: its grant goes to the next waiter.
	go func() { ch <- m.Readmit(ctx, a, time.Hour) }()
	eventually(t, "a waits for admission", admitWaiting(m, "a", 1))
	m.Discard(a)
	next := make(chan result, 1)
	acquireAsync(ctx, m, "a", next)
	eventually(t, "a second transaction of a waits", admitWaiting(m, "a", 2))
	m.Release(b)
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	r := recv(t, next)
	if r.err != nil {
		t.Fatal(r.err)
	}
	wantActive(t, m, 1, map[string]int{"a": 1, "b": 0})
	m.Release(r.c)
	wantActive(t, m, 0, map[string]int{"a": 0, "b": 0})
	checkInvariants(t, m)
}
