package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// acquireTimesOut expects Acquire to wait (for 20ms, its context's
// deadline) rather than get a connection.
func acquireTimesOut(t *testing.T, m *Manager, tenant string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if c, err := m.Acquire(ctx, tenant); !errors.Is(err, context.DeadlineExceeded) {
		if c != nil {
			m.Release(c)
		}
		t.Fatalf("Acquire(%s) = %v; want it to wait", tenant, err)
	}
}

// Other tenants' demand cannot use a reserve its tenant does not use.
func TestReserveHeldBackForItsTenant(t *testing.T) {
	m, d := newManager(t, config(4,
		tenantSpec{name: "a", poolSize: 4},
		tenantSpec{name: "b", poolSize: 3, reserve: 2}))
	a1, a2 := acquire(t, m, "a"), acquire(t, m, "a")
	acquireTimesOut(t, m, "a") // two slots are b's, unused as they are
	wantStats(t, m, "a", TenantStats{Open: 2, InUse: 2})

	// b gets its reserve at once, even while a is queued.
	res := make(chan result, 1)
	acquireAsync(context.Background(), m, "a", res)
	eventually(t, "a waiting", waiting(m, "a", 1))
	b1, b2 := acquire(t, m, "b"), acquire(t, m, "b")
	wantStats(t, m, "b", TenantStats{Open: 2, InUse: 2})
	// Above its reserve b competes like anyone: the budget is full.
	acquireTimesOut(t, m, "b")
	checkInvariants(t, m)

	// a's waiter gets a's own released connection; b's reserve stays.
	m.Release(a1)
	r := recv(t, res)
	if r.err != nil || r.c != a1 {
		t.Fatalf("a's waiter got %v, %v", r.c, r.err)
	}
	if n := d.count("b"); n != 2 {
		t.Fatalf("b dials = %d", n)
	}
	for _, c := range []*Conn{r.c, a2, b1, b2} {
		m.Release(c)
	}
}

// Idle eviction for another tenant never takes a tenant below its reserve.
func TestIdleEvictionRespectsReserve(t *testing.T) {
	m, _ := newManager(t, config(3,
		tenantSpec{name: "a", poolSize: 3},
		tenantSpec{name: "b", poolSize: 2, reserve: 1}))
	b1, b2 := acquire(t, m, "b"), acquire(t, m, "b")
	m.Release(b1) // least recently used
	m.Release(b2)
	a1 := acquire(t, m, "a") // the free slot
	a2 := acquire(t, m, "a") // b's slot above its reserve: b1 evicted
	if !isClosed(b1) || isClosed(b2) {
		t.Fatalf("evicted b1 %v b2 %v; want b1 only", isClosed(b1), isClosed(b2))
	}
	acquireTimesOut(t, m, "a") // b2 is b's reserve
	if isClosed(b2) {
		t.Fatal("b's reserved idle connection was closed for a")
	}
	wantStats(t, m, "b", TenantStats{Open: 1, Idle: 1})
	if got := acquire(t, m, "b"); got != b2 {
		t.Fatal("b's reserved connection not reused")
	}
	m.Release(b2)
	m.Release(a1)
	m.Release(a2)
}

// A tenant's fair share is never below its reserve: a busy tenant at its
// reserve keeps its connections although another tenant waits below its
// pool_size-weighted share.
func TestFairShareFloorsAtReserve(t *testing.T) {
	m, _ := newManager(t, config(4,
		tenantSpec{name: "a", poolSize: 4},
		tenantSpec{name: "b", poolSize: 4, reserve: 3}))
	a1 := acquire(t, m, "a")
	var bs []*Conn
	for i := 0; i < 3; i++ {
		bs = append(bs, acquire(t, m, "b"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ra, rb := make(chan result, 1), make(chan result, 1)
	acquireAsync(ctx, m, "a", ra)
	eventually(t, "a waiting", waiting(m, "a", 1))
	acquireAsync(ctx, m, "b", rb)
	eventually(t, "b waiting", waiting(m, "b", 1))

	// Shares by pool_size are 2/2, but b's reserve makes its share 3: b's
	// release goes to b's own waiter.
	m.Release(bs[0])
	r := recv(t, rb)
	if r.err != nil || r.c != bs[0] {
		t.Fatalf("b's waiter got %v, %v", r.c, r.err)
	}
	if s := m.Stats(); s["a"].Open != 1 || s["b"].Open != 3 || s["a"].Waiting != 1 {
		t.Fatalf("stats %+v", s)
	}
	cancel()
	if r := recv(t, ra); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("a's waiter: %v", r.err)
	}
	for _, c := range append(bs, a1) {
		m.Release(c)
	}
}

// TestNoStarvationAcrossTenants: the budget is smaller than the number of
// busy tenants, and one tenant queues many more clients than the others.
// Slots rotate: every tenant is served about equally often and no wait
// comes near pool_wait_timeout (without rotation, the two quiet tenants
// keep a slot each and the noisy one starves).
func TestNoStarvationAcrossTenants(t *testing.T) {
	const limit = 2
	m, _ := newManager(t, config(limit,
		tenantSpec{name: "noisy", poolSize: 2, wait: 5 * time.Second},
		tenantSpec{name: "b", poolSize: 2, wait: 5 * time.Second},
		tenantSpec{name: "c", poolSize: 2, wait: 5 * time.Second}))
	clients := map[string]int{"noisy": 16, "b": 3, "c": 3}
	var (
		mu      sync.Mutex
		count   = map[string]int{}
		maxWait = map[string]time.Duration{}
	)
	stop := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for tenant, n := range clients {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					start := time.Now()
					c, err := m.Acquire(context.Background(), tenant)
					if err != nil {
						failed.Add(1)
						t.Error(err)
						return
					}
					w := time.Since(start)
					mu.Lock()
					count[tenant]++
					maxWait[tenant] = max(maxWait[tenant], w)
					mu.Unlock()
					time.Sleep(200 * time.Microsecond)
					m.Release(c)
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("acquisitions %v, longest waits %v", count, maxWait)
	total := count["noisy"] + count["b"] + count["c"]
	for tenant := range clients {
		// Tenant-fair: a third each, whatever the client counts. Allow a
		// wide margin; starvation gives a tenant a few percent.
		if share := float64(count[tenant]) / float64(total); share < 0.2 {
			t.Errorf("tenant %s got %.2f of the acquisitions, want about 1/3", tenant, share)
		}
		if maxWait[tenant] > 500*time.Millisecond {
			t.Errorf("tenant %s waited up to %v", tenant, maxWait[tenant])
		}
	}
	checkInvariants(t, m)
}

// With a budget of one and two busy tenants, the slot alternates.
func TestSlotRotatesWhenBudgetIsShort(t *testing.T) {
	m, d := newManager(t, config(1,
		tenantSpec{name: "a", poolSize: 1},
		tenantSpec{name: "b", poolSize: 1}))
	c := acquire(t, m, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := make(chan result, 8)
	for i := 0; i < 3; i++ {
		acquireAsync(ctx, m, "a", res)
	}
	eventually(t, "a's waiters", waiting(m, "a", 3))
	acquireAsync(ctx, m, "b", res)
	eventually(t, "b waiting", waiting(m, "b", 1))

	// a's three waiters came first, yet b, holding nothing, is next.
	m.Release(c)
	r := recv(t, res)
	if r.err != nil || r.tenant != "b" || !isClosed(c) {
		t.Fatalf("first grant went to %s (%v); want b, with a's connection closed", r.tenant, r.err)
	}
	acquireAsync(ctx, m, "b", res)
	eventually(t, "b waiting again", waiting(m, "b", 1))
	m.Release(r.c)
	r2 := recv(t, res)
	if r2.err != nil || r2.tenant != "a" {
		t.Fatalf("second grant went to %s (%v); want a", r2.tenant, r2.err)
	}
	if d.count("a") != 2 || d.count("b") != 1 {
		t.Fatalf("dials a=%d b=%d", d.count("a"), d.count("b"))
	}
	m.Release(r2.c)
	r3 := recv(t, res) // b again
	if r3.tenant != "b" {
		t.Fatalf("third grant went to %s", r3.tenant)
	}
	cancel()
	for i := 0; i < 2; i++ {
		if r := recv(t, res); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("left-over waiter: %v", r.err)
		}
	}
	m.Release(r3.c)
}
