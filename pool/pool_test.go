package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/pgbridge/pgbridge/internal/pgtest"
	"github.com/pgbridge/pgbridge/internal/stats"
	"github.com/pgbridge/pgbridge/routing"
)

// cluster is the package's throwaway PostgreSQL for the tests that dial a
// real backend; tenants holds the Bridge tenants provisioned on it.
var (
	cluster *pgtest.Cluster
	tenants = map[string]pgtest.Tenant{}
)

// tenantNames are provisioned on every test cluster, with the same
// passwords, so a configuration can move between clusters.
var tenantNames = []string{"acme", "globex", "initech"}

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(c *pgtest.Cluster) int {
		cluster = c
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, name := range tenantNames {
			tn, err := c.CreateTenant(ctx, name)
			if err != nil {
				fmt.Fprintf(os.Stderr, "provision tenant %s: %v\n", name, err)
				return 1
			}
			tenants[name] = tn
		}
		code := m.Run()
		closeTLSCluster()
		if code != 0 {
			return code
		}
		// goleak.VerifyTestMain would exit before the cluster is closed.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines leaked by the tests: %v\n", err)
			return 1
		}
		return 0
	}))
}

// ---- fakes -----------------------------------------------------------------

// fakeDialer hands out net.Pipe connections whose far end is drained by a
// goroutine that ends when the pipe closes.
type fakeDialer struct {
	mu     sync.Mutex
	dials  map[string]int
	script []error       // consumed one per dial; a nil entry is a success
	fail   error         // every dial fails with this once script is empty
	gate   chan struct{} // when set, dials wait for it to close (or ctx)
	block  bool          // dials wait for ctx to end
	conns  []*fakeNetConn
	pid    uint32
	drains sync.WaitGroup
}

type fakeNetConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *fakeNetConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

func newFakeDialer() *fakeDialer { return &fakeDialer{dials: map[string]int{}} }

func (d *fakeDialer) Dial(ctx context.Context, t *routing.Tenant) (*Conn, error) {
	if err := ctx.Err(); err != nil { // as a real dial would
		return nil, err
	}
	d.mu.Lock()
	d.dials[t.Name]++
	var err error
	if len(d.script) > 0 {
		err, d.script = d.script[0], d.script[1:]
	} else {
		err = d.fail
	}
	gate, block := d.gate, d.block
	d.pid++
	pid := d.pid
	d.mu.Unlock()

	if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	ours, theirs := net.Pipe()
	fc := &fakeNetConn{Conn: ours}
	d.drains.Add(1)
	go func() {
		defer d.drains.Done()
		_, _ = io.Copy(io.Discard, theirs)
		_ = theirs.Close()
	}()
	d.mu.Lock()
	d.conns = append(d.conns, fc)
	d.mu.Unlock()
	return &Conn{
		Conn:   fc,
		PID:    pid,
		Params: map[string]string{"server_version": "17.0", "pgbridge_tenant": t.Name},
	}, nil
}

func (d *fakeDialer) count(tenant string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[tenant]
}

func (d *fakeDialer) total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, v := range d.dials {
		n += v
	}
	return n
}

func (d *fakeDialer) set(f func(d *fakeDialer)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

// waitClosed waits until every connection dialed was closed and its drain
// goroutine ended.
func (d *fakeDialer) waitClosed(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() { d.drains.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		d.mu.Lock()
		open := 0
		for _, c := range d.conns {
			if !c.closed.Load() {
				open++
			}
		}
		d.mu.Unlock()
		t.Fatalf("%d backend connections never closed", open)
	}
}

// fakeClock is a settable clock for WithClock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// withInterval sets the maintenance period; tests that drive reap and fill
// themselves use a long one so the loop stays out of the way.
func withInterval(d time.Duration) Option { return func(m *Manager) { m.interval = d } }

// ---- helpers -----------------------------------------------------------------

type tenantSpec struct {
	name     string
	poolSize int
	minSize  int
	reserve  int
	wait     time.Duration
}

func config(limit int, specs ...tenantSpec) *routing.Config {
	cfg := &routing.Config{
		Backend: routing.Backend{
			Host:           "backend.invalid",
			Port:           5432,
			MaxConnections: limit,
			ConnectTimeout: time.Second,
		},
		Tenants: map[string]*routing.Tenant{},
	}
	for _, s := range specs {
		wait := s.wait
		if wait == 0 {
			wait = 5 * time.Second
		}
		cfg.Tenants[s.name] = &routing.Tenant{
			Name:        s.name,
			Database:    "tenant_" + s.name,
			BackendUser: s.name + "_user",
			Policy: routing.Policy{
				PoolMode:            routing.PoolTransaction,
				PoolSize:            s.poolSize,
				MinPoolSize:         s.minSize,
				ReservedConnections: s.reserve,
				PoolWaitTimeout:     wait,
			},
		}
	}
	return cfg
}

// newManager starts a Manager on a fake dialer. At the end of the test it
// checks the invariants, closes the Manager and waits for every backend
// connection to be closed (so the test must have released what it holds).
func newManager(t *testing.T, cfg *routing.Config, opts ...Option) (*Manager, *fakeDialer) {
	t.Helper()
	d := newFakeDialer()
	m := New(cfg, append([]Option{WithDialer(d), withInterval(time.Hour)}, opts...)...)
	t.Cleanup(func() {
		checkInvariants(t, m)
		m.Close()
		m.Close()
		checkInvariants(t, m)
		d.waitClosed(t)
		if open, _ := m.Budget(); open != 0 {
			t.Errorf("after Close and releases, %d connections still counted", open)
		}
	})
	return m, d
}

// checkInvariants verifies the accounting through the public snapshot and,
// in more depth, under the lock.
func checkInvariants(t *testing.T, m *Manager) {
	t.Helper()
	sum := 0
	m.mu.Lock()
	defer m.mu.Unlock()
	waiting, gap, active, admitWaiting := 0, 0, 0, 0
	pools := map[string]*tenantPool{}
	for name, tp := range m.tenants {
		pools[name] = tp
		gap += tp.unused()
		if tp.removed {
			t.Errorf("tenant %s: removed but still configured", name)
		}
	}
	for tp := range m.retired {
		pools["removed "+tp.name] = tp
		if !tp.removed || tp.open == 0 || len(tp.idle) > 0 || len(tp.waiters) > 0 {
			t.Errorf("removed tenant %s kept with open=%d idle=%d waiters=%d", tp.name, tp.open, len(tp.idle), len(tp.waiters))
		}
	}
	for name, tp := range pools {
		inUse := tp.open - len(tp.idle) - tp.dialing
		if tp.open < 0 || tp.dialing < 0 || inUse < 0 {
			t.Errorf("tenant %s: negative counts open=%d idle=%d dialing=%d in use=%d",
				name, tp.open, len(tp.idle), tp.dialing, inUse)
		}
		if tp.open > tp.tenant.Policy.PoolSize && m.updates == 0 {
			t.Errorf("tenant %s: open %d above pool_size %d", name, tp.open, tp.tenant.Policy.PoolSize)
		}
		if len(tp.waiters) > 0 && len(tp.idle) > 0 {
			t.Errorf("tenant %s: %d waiters while %d idle", name, len(tp.waiters), len(tp.idle))
		}
		for _, c := range tp.idle {
			if c.out || c.tenant != tp {
				t.Errorf("tenant %s: idle connection marked in use or of another tenant", name)
			}
		}
		if len(tp.waiters) > 0 && tp.open < tp.tenant.Policy.PoolSize {
			if m.roomLocked(tp, nil) {
				t.Errorf("tenant %s waits with room under pool_size while the budget has room for it (%d/%d, unused reserves %d)",
					name, m.open, m.limit, m.gap)
			}
			// Idle connections of tenants within their fair share are
			// theirs while warm and handed over by maintenance once cold.
			share := m.sharesLocked(nil)
			for _, o := range m.tenants {
				if o != tp && len(o.idle) > 0 && o.open > o.reserve() && o.open > share(o) && m.roomLocked(tp, o) {
					t.Errorf("tenant %s waits while closing an idle connection of %s (above its share %d) would give it room", name, o.name, share(o))
				}
			}
		}
		sum += tp.open
		waiting += len(tp.waiters)
		active += tp.active
		admitWaiting += len(tp.admitWaiters)
		if tp.active < 0 {
			t.Errorf("tenant %s: %d active transactions", name, tp.active)
		}
		if queued := slices.Contains(m.admitQueue, tp); queued != (len(tp.admitWaiters) > 0) {
			t.Errorf("tenant %s: %d admission waiters, in admitQueue: %v", name, len(tp.admitWaiters), queued)
		}
		if tp.removed && len(tp.admitWaiters) > 0 {
			t.Errorf("removed tenant %s still has admission waiters", name)
		}
	}
	if active != m.active || admitWaiting != m.admitWaiting {
		t.Errorf("active %d and admission waiters %d counted, tenants hold %d and %d", m.active, m.admitWaiting, active, admitWaiting)
	}
	queued := 0
	for _, tp := range pools {
		if len(tp.admitWaiters) > 0 {
			queued++
		}
	}
	if len(m.admitQueue) != queued {
		t.Errorf("admitQueue holds %d tenants, %d have admission waiters", len(m.admitQueue), queued)
	}
	if m.admitWaiting > 0 && (m.maxActive == 0 || m.active < m.maxActive) {
		t.Errorf("%d admission waiters while %d of %d are active", m.admitWaiting, m.active, m.maxActive)
	}
	if sum != m.open {
		t.Errorf("budget open %d, sum of tenant open %d", m.open, sum)
	}
	if gap != m.gap {
		t.Errorf("unused reserves counted %d, sum over tenants %d", m.gap, gap)
	}
	if m.open < 0 || (m.open+m.gap > m.limit && m.updates == 0) {
		t.Errorf("budget open %d plus unused reserves %d outside [0, %d]", m.open, m.gap, m.limit)
	}
	if waiting != m.waiting {
		t.Errorf("waiter count %d, queues hold %d", m.waiting, waiting)
	}
}

// checkPublic verifies the exported snapshot: Budget open equals the sum of
// Stats Open and every count is sane.
func checkPublic(t *testing.T, m *Manager) {
	t.Helper()
	st := m.Stats()
	open, limit := m.Budget()
	sum := 0
	for name, s := range st {
		if s.Open < 0 || s.Idle < 0 || s.InUse < 0 || s.Dialing < 0 || s.Waiting < 0 {
			t.Errorf("tenant %s: negative stats %+v", name, s)
		}
		if s.Idle+s.InUse+s.Dialing != s.Open {
			t.Errorf("tenant %s: %+v does not add up", name, s)
		}
		sum += s.Open
	}
	// Removed tenants' connections still count in the budget, and after
	// an Update lowered it the budget may be exceeded until they return.
	m.mu.Lock()
	for tp := range m.retired {
		sum += tp.open
	}
	updated := m.updates > 0
	m.mu.Unlock()
	if sum != open || (open > limit && !updated) {
		t.Errorf("Budget() = %d/%d, sum of Stats Open and removed tenants' = %d", open, limit, sum)
	}
}

func wantStats(t *testing.T, m *Manager, tenant string, want TenantStats) {
	t.Helper()
	if got := m.Stats()[tenant]; got != want {
		t.Errorf("Stats()[%q] = %+v, want %+v", tenant, got, want)
	}
	checkPublic(t, m)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// dialsAdopted reports, once every caller is gone, whether the dials that
// callers gave up on (see dialWaiting) are done and their connections back
// in the pool: adopt releases one a moment after its dial stops counting,
// and until then it shows as in use. A connection really leaked stays in
// use, so that waiting for this fails.
func dialsAdopted(m *Manager) func() bool {
	return func() bool {
		for _, s := range m.Stats() {
			if s.Dialing != 0 || s.InUse != 0 {
				return false
			}
		}
		return true
	}
}

func waiting(m *Manager, tenant string, n int) func() bool {
	return func() bool { return m.Stats()[tenant].Waiting == n }
}

func acquire(t *testing.T, m *Manager, tenant string) *Conn {
	t.Helper()
	c, err := m.Acquire(context.Background(), tenant)
	if err != nil {
		t.Fatalf("Acquire(%s): %v", tenant, err)
	}
	if c.Tenant() != tenant {
		t.Fatalf("Acquire(%s) returned a connection of %s", tenant, c.Tenant())
	}
	return c
}

type result struct {
	tenant string
	c      *Conn
	err    error
}

// acquireAsync starts an Acquire whose outcome arrives on out.
func acquireAsync(ctx context.Context, m *Manager, tenant string, out chan<- result) {
	go func() {
		c, err := m.Acquire(ctx, tenant)
		out <- result{tenant, c, err}
	}()
}

func recv(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no Acquire result")
		return result{}
	}
}

func isClosed(c *Conn) bool { return c.Conn.(*fakeNetConn).closed.Load() }

// ---- tests -----------------------------------------------------------------

func TestAcquireReleaseReuse(t *testing.T) {
	m, d := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 5}))

	c1 := acquire(t, m, "acme")
	wantStats(t, m, "acme", TenantStats{Open: 1, InUse: 1})
	m.Release(c1)
	wantStats(t, m, "acme", TenantStats{Open: 1, Idle: 1})

	c2 := acquire(t, m, "acme")
	if c2 != c1 {
		t.Fatal("a released connection was not reused")
	}
	if n := d.count("acme"); n != 1 {
		t.Fatalf("dials = %d, want 1", n)
	}
	if p := m.Params("acme"); p["server_version"] != "17.0" {
		t.Fatalf("Params = %v", p)
	}
	m.Params("acme")["server_version"] = "changed"
	if m.Params("acme")["server_version"] != "17.0" {
		t.Fatal("Params returned the pool's own map")
	}
	m.Release(c2)
}

func TestLIFOReuse(t *testing.T) {
	m, d := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 5}))
	c1 := acquire(t, m, "acme")
	c2 := acquire(t, m, "acme")
	c3 := acquire(t, m, "acme")
	for _, c := range []*Conn{c1, c2, c3} {
		m.Release(c)
	}
	for _, want := range []*Conn{c3, c2, c1} {
		if got := acquire(t, m, "acme"); got != want {
			t.Fatalf("got PID %d, want PID %d (most recently released first)", got.PID, want.PID)
		}
	}
	if n := d.count("acme"); n != 3 {
		t.Fatalf("dials = %d, want 3", n)
	}
	for _, c := range []*Conn{c1, c2, c3} {
		m.Release(c)
	}
}

func TestUnknownTenant(t *testing.T) {
	m, _ := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 1}))
	if _, err := m.Acquire(context.Background(), "nobody"); !errors.Is(err, ErrUnknownTenant) {
		t.Fatalf("err = %v, want ErrUnknownTenant", err)
	}
	if m.Params("nobody") != nil || m.Params("acme") != nil {
		t.Fatal("Params before any dial should be nil")
	}
}

func TestPoolSizeCapHandsOffToWaiter(t *testing.T) {
	m, d := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 2}))
	c1 := acquire(t, m, "acme")
	c2 := acquire(t, m, "acme")

	res := make(chan result, 1)
	acquireAsync(context.Background(), m, "acme", res)
	eventually(t, "a waiter", waiting(m, "acme", 1))
	wantStats(t, m, "acme", TenantStats{Open: 2, InUse: 2, Waiting: 1})

	m.Release(c1)
	r := recv(t, res)
	if r.err != nil || r.c != c1 {
		t.Fatalf("waiter got %v, %v; want the released connection", r.c, r.err)
	}
	if n := d.count("acme"); n != 2 {
		t.Fatalf("dials = %d, want 2 (no dial for the waiter)", n)
	}
	wantStats(t, m, "acme", TenantStats{Open: 2, InUse: 2})
	m.Release(c2)
	m.Release(r.c)
}

func TestWaitEnds(t *testing.T) {
	tests := []struct {
		name string
		wait time.Duration
		ctx  func() (context.Context, context.CancelFunc)
		// cancel ends the context once the waiter is queued.
		cancel bool
		want   error
	}{
		{name: "pool_wait_timeout", wait: 50 * time.Millisecond,
			ctx: func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, want: ErrWaitTimeout},
		{name: "ctx canceled", wait: time.Minute, cancel: true,
			ctx: func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, want: context.Canceled},
		{name: "ctx deadline", wait: time.Minute,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			}, want: context.DeadlineExceeded},
		{name: "no pool_wait_timeout, ctx deadline", wait: -1,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			}, want: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(10, tenantSpec{name: "acme", poolSize: 1, wait: tt.wait})
			if tt.wait < 0 {
				cfg.Tenants["acme"].Policy.PoolWaitTimeout = 0 // no limit but ctx
			}
			m, d := newManager(t, cfg)
			held := acquire(t, m, "acme")

			ctx, cancel := tt.ctx()
			defer cancel()
			res := make(chan result, 1)
			acquireAsync(ctx, m, "acme", res)
			if tt.cancel {
				eventually(t, "a waiter", waiting(m, "acme", 1))
				cancel()
			}
			r := recv(t, res)
			if !errors.Is(r.err, tt.want) || r.c != nil {
				t.Fatalf("Acquire = %v, %v; want %v", r.c, r.err, tt.want)
			}
			wantStats(t, m, "acme", TenantStats{Open: 1, InUse: 1})
			checkInvariants(t, m)
			if open, _ := m.Budget(); open != 1 {
				t.Fatalf("budget open = %d, want 1", open)
			}

			// The queue still works after the abandoned wait.
			acquireAsync(context.Background(), m, "acme", res)
			eventually(t, "a waiter", waiting(m, "acme", 1))
			m.Release(held)
			r = recv(t, res)
			if r.err != nil || r.c != held {
				t.Fatalf("next waiter got %v, %v", r.c, r.err)
			}
			if n := d.count("acme"); n != 1 {
				t.Fatalf("dials = %d, want 1", n)
			}
			m.Release(r.c)
		})
	}
}

func TestBudgetEvictsOtherTenantsIdle(t *testing.T) {
	m, d := newManager(t, config(2,
		tenantSpec{name: "a", poolSize: 2},
		tenantSpec{name: "b", poolSize: 2}))
	a1 := acquire(t, m, "a")
	a2 := acquire(t, m, "a")
	m.Release(a1) // least recently used
	m.Release(a2)
	wantStats(t, m, "a", TenantStats{Open: 2, Idle: 2})

	b1 := acquire(t, m, "b")
	if !isClosed(a1) || isClosed(a2) {
		t.Fatalf("evicted: a1 %v, a2 %v; want the least recently used (a1) only", isClosed(a1), isClosed(a2))
	}
	wantStats(t, m, "a", TenantStats{Open: 1, Idle: 1})
	wantStats(t, m, "b", TenantStats{Open: 1, InUse: 1})
	if d.count("b") != 1 {
		t.Fatalf("b dials = %d", d.count("b"))
	}
	if got := acquire(t, m, "a"); got != a2 {
		t.Fatal("a's remaining idle connection was not reused")
	}
	m.Release(a2)
	m.Release(b1)
}

// A tenant within its fair share that releases a connection it has no
// waiter for keeps it while it is warm (handing it over would cost both
// tenants a dial at their next query), and gives its slot to the queued
// tenant once it has gone cold.
func TestReleaseKeepsWarmThenFeedsOtherTenantsQueue(t *testing.T) {
	// Shares of 2 weighted 1:2 are 1 and 1: neither tenant is above its
	// share, so this is not the fair-share transfer.
	clk := newFakeClock()
	m, d := newManager(t, config(2,
		tenantSpec{name: "a", poolSize: 1},
		tenantSpec{name: "b", poolSize: 2}), WithClock(clk.Now))
	a1 := acquire(t, m, "a")
	b1 := acquire(t, m, "b")
	res := make(chan result, 1)
	acquireAsync(context.Background(), m, "b", res)
	eventually(t, "b waiting", waiting(m, "b", 1))

	m.Release(a1)
	wantStats(t, m, "a", TenantStats{Open: 1, Idle: 1})
	if got := acquire(t, m, "a"); got != a1 {
		t.Fatal("a's warm connection was not kept for a")
	}
	m.Release(a1)

	clk.Advance(keepWarm - time.Millisecond)
	m.reap()
	wantStats(t, m, "a", TenantStats{Open: 1, Idle: 1})
	clk.Advance(time.Millisecond)
	m.reap()
	r := recv(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !isClosed(a1) || d.count("b") != 2 {
		t.Fatalf("a1 closed %v, b dials %d", isClosed(a1), d.count("b"))
	}
	wantStats(t, m, "a", TenantStats{})
	wantStats(t, m, "b", TenantStats{Open: 2, InUse: 2})
	m.Release(b1)
	m.Release(r.c)
}

// A tenant above its fair share gives a released connection to a queued
// tenant at once, warm or not.
func TestReleaseAboveShareFeedsOtherTenantsQueue(t *testing.T) {
	m, d := newManager(t, config(3,
		tenantSpec{name: "a", poolSize: 3},
		tenantSpec{name: "b", poolSize: 3}))
	a := []*Conn{acquire(t, m, "a"), acquire(t, m, "a"), acquire(t, m, "a")}
	res := make(chan result, 1)
	acquireAsync(context.Background(), m, "b", res)
	eventually(t, "b waiting", waiting(m, "b", 1))
	m.Release(a[0])
	r := recv(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !isClosed(a[0]) || d.count("b") != 1 {
		t.Fatalf("a[0] closed %v, b dials %d", isClosed(a[0]), d.count("b"))
	}
	m.Release(a[1])
	m.Release(a[2])
	m.Release(r.c)
}

// TestFairShareOnRelease: tenant a holds the whole budget and both tenants
// queue. As a releases, b is given slots until both hold their
// pool_size-weighted share; then a's releases go to a's own waiters.
func TestFairShareOnRelease(t *testing.T) {
	tests := []struct {
		limit, poolA, poolB int
		wantA, wantB        int
	}{
		{limit: 4, poolA: 4, poolB: 4, wantA: 2, wantB: 2},
		{limit: 4, poolA: 6, poolB: 2, wantA: 3, wantB: 1},
		{limit: 4, poolA: 5, poolB: 3, wantA: 3, wantB: 1}, // shares 2.5/1.5 floor to 2/1
		{limit: 6, poolA: 8, poolB: 8, wantA: 3, wantB: 3},
		{limit: 8, poolA: 8, poolB: 2, wantA: 6, wantB: 2}, // b capped by its pool_size
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("limit%d_a%d_b%d", tt.limit, tt.poolA, tt.poolB), func(t *testing.T) {
			m, d := newManager(t, config(tt.limit,
				tenantSpec{name: "a", poolSize: tt.poolA},
				tenantSpec{name: "b", poolSize: tt.poolB}))
			var held []*Conn
			for i := 0; i < tt.limit; i++ {
				held = append(held, acquire(t, m, "a"))
			}
			ctx, cancel := context.WithCancel(context.Background())
			res := make(chan result, 2*tt.limit)
			for i := 0; i < tt.limit; i++ {
				acquireAsync(ctx, m, "a", res)
				acquireAsync(ctx, m, "b", res)
			}
			eventually(t, "both queues", func() bool {
				s := m.Stats()
				return s["a"].Waiting == tt.limit && s["b"].Waiting == tt.limit
			})

			var got []*Conn
			gotB := 0
			for i, c := range held {
				m.Release(c)
				r := recv(t, res)
				if r.err != nil {
					t.Fatalf("release %d: waiter of %s: %v", i, r.tenant, r.err)
				}
				got = append(got, r.c)
				if r.tenant == "b" {
					gotB++
					if !isClosed(c) {
						t.Fatalf("release %d: slot moved to b but a's connection stayed open", i)
					}
				} else if r.c != c {
					t.Fatalf("release %d: a's waiter did not get the released connection", i)
				}
				checkInvariants(t, m)
			}
			s := m.Stats()
			if s["a"].Open != tt.wantA || s["b"].Open != tt.wantB || gotB != tt.wantB {
				t.Fatalf("a holds %d, b holds %d (b served %d); want %d/%d",
					s["a"].Open, s["b"].Open, gotB, tt.wantA, tt.wantB)
			}
			if n := d.count("b"); n != tt.wantB {
				t.Fatalf("b dials = %d, want %d", n, tt.wantB)
			}
			cancel()
			for i := 0; i < 2*tt.limit-len(held); i++ {
				if r := recv(t, res); !errors.Is(r.err, context.Canceled) {
					t.Fatalf("left-over waiter: %v", r.err)
				}
			}
			for _, c := range got {
				m.Release(c)
			}
		})
	}
}

// TestFairnessChurn runs many clients of two tenants against a budget
// smaller than the pool sizes and measures each tenant's share of the
// acquisitions. Every client holds its connection for the same random time
// and every tenant always has clients waiting, so a tenant's share of the
// acquisitions is its share of the budget over time.
func TestFairnessChurn(t *testing.T) {
	tests := []struct {
		poolA, poolB int
		wantA        float64
	}{
		{poolA: 4, poolB: 4, wantA: 0.5},
		{poolA: 6, poolB: 2, wantA: 0.75},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("a%d_b%d", tt.poolA, tt.poolB), func(t *testing.T) {
			const limit, clients = 4, 8
			m, d := newManager(t, config(limit,
				tenantSpec{name: "a", poolSize: tt.poolA, wait: 10 * time.Second},
				tenantSpec{name: "b", poolSize: tt.poolB, wait: 10 * time.Second}))
			var counts [2]atomic.Int64
			var discards atomic.Int64
			stop := time.Now().Add(time.Second)
			var wg sync.WaitGroup
			for i, tenant := range []string{"a", "b"} {
				for j := 0; j < clients; j++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for time.Now().Before(stop) {
							c, err := m.Acquire(context.Background(), tenant)
							if err != nil {
								t.Error(err)
								return
							}
							counts[i].Add(1)
							time.Sleep(time.Duration(100+rand.IntN(400)) * time.Microsecond)
							if rand.IntN(50) == 0 {
								discards.Add(1)
								m.Discard(c)
							} else {
								m.Release(c)
							}
						}
					}()
				}
			}
			wg.Wait()
			a, b := float64(counts[0].Load()), float64(counts[1].Load())
			shareA := a / (a + b)
			t.Logf("acquisitions a=%.0f b=%.0f: a's share %.3f (want %.2f), b's %.3f; dials a=%d b=%d; discards %d",
				a, b, shareA, tt.wantA, 1-shareA, d.count("a"), d.count("b"), discards.Load())
			if math.Abs(shareA-tt.wantA) > 0.2*tt.wantA || math.Abs((1-shareA)-(1-tt.wantA)) > 0.2*(1-tt.wantA) {
				t.Errorf("a's share of acquisitions %.3f, b's %.3f; want %.2f/%.2f within 20%%",
					shareA, 1-shareA, tt.wantA, 1-tt.wantA)
			}
			checkPublic(t, m)
		})
	}
}

// TestChurnWithCancellations hammers the wait queue with short timeouts,
// cancellations and discards so that grants race with abandoned waits; the
// accounting must come out exact and no connection may leak.
func TestChurnWithCancellations(t *testing.T) {
	for _, maxActive := range []int{0, 2} {
		t.Run(fmt.Sprintf("max_active_transactions=%d", maxActive), func(t *testing.T) {
			churnWithCancellations(t, maxActive)
		})
	}
}

func churnWithCancellations(t *testing.T, maxActive int) {
	cfg := config(3,
		tenantSpec{name: "a", poolSize: 3, wait: 2 * time.Millisecond},
		tenantSpec{name: "b", poolSize: 2, wait: 3 * time.Millisecond},
		tenantSpec{name: "c", poolSize: 1, wait: time.Millisecond})
	cfg.Backend.MaxActiveTransactions = maxActive
	m, _ := newManager(t, cfg)
	stop := time.Now().Add(500 * time.Millisecond)
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for i := 0; i < 24; i++ {
		tenant := []string{"a", "b", "c"}[i%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(3000))*time.Microsecond)
				c, err := m.Acquire(ctx, tenant)
				cancel()
				if err != nil {
					if !errors.Is(err, ErrWaitTimeout) && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Acquire: %v", err)
						return
					}
					failed.Add(1)
					continue
				}
				ok.Add(1)
				time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
				if rand.IntN(10) == 0 {
					m.Discard(c)
				} else {
					m.Release(c)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d acquisitions, %d timeouts", ok.Load(), failed.Load())
	eventually(t, "background dials done and adopted", dialsAdopted(m))
	checkInvariants(t, m)
	checkPublic(t, m)
	for name, s := range m.Stats() {
		if s.InUse != 0 || s.Waiting != 0 || s.Dialing != 0 || s.Active != 0 || s.AdmitWaiting != 0 {
			t.Errorf("tenant %s after the churn: %+v", name, s)
		}
	}
}

func TestDialFailure(t *testing.T) {
	errBoom := errors.New("boom")

	t.Run("frees the slot", func(t *testing.T) {
		m, d := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 1}))
		d.set(func(d *fakeDialer) { d.script = []error{errBoom} })
		if _, err := m.Acquire(context.Background(), "acme"); !errors.Is(err, errBoom) {
			t.Fatalf("err = %v", err)
		}
		wantStats(t, m, "acme", TenantStats{})
		m.Release(acquire(t, m, "acme"))
	})

	t.Run("waiter dials for itself", func(t *testing.T) {
		m, d := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 1}))
		gate := make(chan struct{})
		d.set(func(d *fakeDialer) { d.script = []error{errBoom}; d.gate = gate })
		first, second := make(chan result, 1), make(chan result, 1)
		acquireAsync(context.Background(), m, "acme", first)
		eventually(t, "a dial in progress", func() bool { return m.Stats()["acme"].Dialing == 1 })
		acquireAsync(context.Background(), m, "acme", second)
		eventually(t, "a waiter", waiting(m, "acme", 1))
		wantStats(t, m, "acme", TenantStats{Open: 1, Dialing: 1, Waiting: 1})

		close(gate)
		if r := recv(t, first); !errors.Is(r.err, errBoom) {
			t.Fatalf("first = %v", r.err)
		}
		r := recv(t, second)
		if r.err != nil {
			t.Fatalf("second = %v", r.err)
		}
		if n := d.count("acme"); n != 2 {
			t.Fatalf("dials = %d, want 2", n)
		}
		wantStats(t, m, "acme", TenantStats{Open: 1, InUse: 1})
		m.Release(r.c)
	})

	t.Run("another tenant's waiter gets the budget", func(t *testing.T) {
		m, d := newManager(t, config(1,
			tenantSpec{name: "a", poolSize: 1},
			tenantSpec{name: "b", poolSize: 1}))
		gate := make(chan struct{})
		d.set(func(d *fakeDialer) { d.script = []error{errBoom}; d.gate = gate })
		first, second := make(chan result, 1), make(chan result, 1)
		acquireAsync(context.Background(), m, "a", first)
		eventually(t, "a dial in progress", func() bool { return m.Stats()["a"].Dialing == 1 })
		acquireAsync(context.Background(), m, "b", second)
		eventually(t, "b waiting", waiting(m, "b", 1))
		close(gate)
		if r := recv(t, first); !errors.Is(r.err, errBoom) {
			t.Fatalf("a = %v", r.err)
		}
		r := recv(t, second)
		if r.err != nil {
			t.Fatalf("b = %v", r.err)
		}
		m.Release(r.c)
	})
}

func TestDialRetry(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	starting := &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}
	badPassword := &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"}
	tests := []struct {
		name    string
		resume  time.Duration
		script  []error
		fail    error
		wantErr error // nil: success
		dials   int   // exact, or a minimum when minimum is set
		minimum bool
	}{
		{name: "refused then up", resume: 10 * time.Second, script: []error{refused, starting, nil}, dials: 3},
		{name: "no resume_timeout", resume: 0, script: []error{refused}, wantErr: syscall.ECONNREFUSED, dials: 1},
		{name: "auth failure not retried", resume: 10 * time.Second, script: []error{badPassword}, wantErr: badPassword, dials: 1},
		{name: "gives up after resume_timeout", resume: 250 * time.Millisecond, fail: refused, wantErr: syscall.ECONNREFUSED, dials: 2, minimum: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(10, tenantSpec{name: "acme", poolSize: 1})
			cfg.Backend.ResumeTimeout = tt.resume
			m, d := newManager(t, cfg)
			d.set(func(d *fakeDialer) { d.script = tt.script; d.fail = tt.fail })
			c, err := m.Acquire(context.Background(), "acme")
			if !errors.Is(err, tt.wantErr) && (tt.wantErr != nil || err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if n := d.count("acme"); n != tt.dials && !(tt.minimum && n >= tt.dials) {
				t.Fatalf("dials = %d, want %d", n, tt.dials)
			}
			if c != nil {
				m.Release(c)
				wantStats(t, m, "acme", TenantStats{Open: 1, Idle: 1})
			} else {
				wantStats(t, m, "acme", TenantStats{})
			}
		})
	}
}

func TestConnectTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		block   bool
		wantErr error
	}{
		{name: "zero means none", timeout: 0},
		{name: "bounds a stalled dial", timeout: 50 * time.Millisecond, block: true, wantErr: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(10, tenantSpec{name: "acme", poolSize: 1})
			cfg.Backend.ConnectTimeout = tt.timeout
			m, d := newManager(t, cfg)
			d.set(func(d *fakeDialer) { d.block = tt.block })
			c, err := m.Acquire(context.Background(), "acme")
			if !errors.Is(err, tt.wantErr) && (tt.wantErr != nil || err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if c != nil {
				m.Release(c)
			}
			checkPublic(t, m)
		})
	}
}

func TestDiscardFreesSlot(t *testing.T) {
	m, d := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 1}))
	c := acquire(t, m, "acme")
	res := make(chan result, 1)
	acquireAsync(context.Background(), m, "acme", res)
	eventually(t, "a waiter", waiting(m, "acme", 1))

	m.Discard(c)
	if !isClosed(c) {
		t.Fatal("discarded connection not closed")
	}
	r := recv(t, res)
	if r.err != nil || r.c == c {
		t.Fatalf("waiter got %v, %v; want a fresh connection", r.c, r.err)
	}
	if n := d.count("acme"); n != 2 {
		t.Fatalf("dials = %d, want 2", n)
	}
	m.Discard(r.c)
	wantStats(t, m, "acme", TenantStats{})
}

func TestDoubleReleaseKeepsCounts(t *testing.T) {
	m, _ := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 2}))
	c := acquire(t, m, "acme")
	m.Release(c)
	m.Release(c) // a caller bug; logged, ignored
	m.Discard(c)
	wantStats(t, m, "acme", TenantStats{Open: 1, Idle: 1})
	c1 := acquire(t, m, "acme")
	c2 := acquire(t, m, "acme")
	if c1 == c2 {
		t.Fatal("one connection handed out twice")
	}
	m.Release(c1)
	m.Release(c2)
}

func TestReapIdle(t *testing.T) {
	clk := newFakeClock()
	cfg := config(10, tenantSpec{name: "acme", poolSize: 3, minSize: 1})
	cfg.Backend.IdleTimeout = time.Minute
	m, _ := newManager(t, cfg, WithClock(clk.Now))

	c1, c2, c3 := acquire(t, m, "acme"), acquire(t, m, "acme"), acquire(t, m, "acme")
	m.Release(c1)
	m.Release(c2)
	m.Release(c3)

	clk.Advance(30 * time.Second)
	m.reap()
	wantStats(t, m, "acme", TenantStats{Open: 3, Idle: 3})

	// Use c3 again: it becomes the freshest.
	m.Release(acquire(t, m, "acme"))
	clk.Advance(40 * time.Second) // c1, c2 idle 70s, c3 idle 40s
	m.reap()
	wantStats(t, m, "acme", TenantStats{Open: 1, Idle: 1})
	if !isClosed(c1) || !isClosed(c2) || isClosed(c3) {
		t.Fatalf("closed: c1 %v c2 %v c3 %v; want c1 and c2", isClosed(c1), isClosed(c2), isClosed(c3))
	}

	// Never below min_pool_size.
	clk.Advance(time.Hour)
	m.reap()
	wantStats(t, m, "acme", TenantStats{Open: 1, Idle: 1})

	// In-use connections count towards min_pool_size and are not reaped.
	held := acquire(t, m, "acme")
	c4 := acquire(t, m, "acme")
	m.Release(c4)
	clk.Advance(2 * time.Minute)
	m.reap()
	wantStats(t, m, "acme", TenantStats{Open: 1, InUse: 1})
	m.Release(held)
}

func TestFillMinPoolSize(t *testing.T) {
	t.Run("fills every tenant", func(t *testing.T) {
		m, d := newManager(t, config(10,
			tenantSpec{name: "a", poolSize: 3, minSize: 2},
			tenantSpec{name: "b", poolSize: 3, minSize: 1},
			tenantSpec{name: "c", poolSize: 3}))
		m.fill()
		wantStats(t, m, "a", TenantStats{Open: 2, Idle: 2})
		wantStats(t, m, "b", TenantStats{Open: 1, Idle: 1})
		wantStats(t, m, "c", TenantStats{})
		m.fill()
		if n := d.total(); n != 3 {
			t.Fatalf("dials = %d, want 3", n)
		}
		// In-use connections count: no extra dial.
		c := acquire(t, m, "b")
		m.fill()
		if n := d.total(); n != 3 {
			t.Fatalf("dials after acquire = %d, want 3", n)
		}
		m.Release(c)
	})

	t.Run("within the budget", func(t *testing.T) {
		m, _ := newManager(t, config(2,
			tenantSpec{name: "a", poolSize: 3, minSize: 2},
			tenantSpec{name: "b", poolSize: 3, minSize: 2}))
		m.fill()
		if open, _ := m.Budget(); open != 2 {
			t.Fatalf("budget open = %d, want 2", open)
		}
		checkPublic(t, m)
	})

	t.Run("a failing tenant does not stop the others", func(t *testing.T) {
		m, d := newManager(t, config(10,
			tenantSpec{name: "a", poolSize: 3, minSize: 1},
			tenantSpec{name: "b", poolSize: 3, minSize: 1}))
		d.set(func(d *fakeDialer) { d.script = []error{errors.New("boom")} }) // a's dial
		m.fill()
		wantStats(t, m, "a", TenantStats{})
		wantStats(t, m, "b", TenantStats{Open: 1, Idle: 1})
		m.fill()
		wantStats(t, m, "a", TenantStats{Open: 1, Idle: 1})
	})

	t.Run("maintenance loop fills", func(t *testing.T) {
		d := newFakeDialer()
		m := New(config(10, tenantSpec{name: "a", poolSize: 3, minSize: 2}),
			WithDialer(d), withInterval(5*time.Millisecond))
		eventually(t, "min_pool_size", func() bool { return m.Stats()["a"].Idle == 2 })
		checkInvariants(t, m)
		m.Close()
		d.waitClosed(t)
	})
}

func TestMaxLifetime(t *testing.T) {
	clk := newFakeClock()
	cfg := config(10, tenantSpec{name: "acme", poolSize: 3, minSize: 1})
	cfg.Backend.MaxLifetime = time.Hour
	m, d := newManager(t, cfg, WithClock(clk.Now))

	old := acquire(t, m, "acme")
	m.Release(old)
	clk.Advance(2 * time.Hour)
	c := acquire(t, m, "acme")
	if c == old || !isClosed(old) {
		t.Fatal("an expired idle connection was handed out or left open")
	}
	if n := d.count("acme"); n != 2 {
		t.Fatalf("dials = %d, want 2", n)
	}
	wantStats(t, m, "acme", TenantStats{Open: 1, InUse: 1})

	// Released after its lifetime: closed, not pooled.
	clk.Advance(2 * time.Hour)
	m.Release(c)
	if !isClosed(c) {
		t.Fatal("an expired connection went back to the pool")
	}
	wantStats(t, m, "acme", TenantStats{})

	// Reaping closes expired idle connections even below min_pool_size.
	m.fill()
	wantStats(t, m, "acme", TenantStats{Open: 1, Idle: 1})
	clk.Advance(2 * time.Hour)
	m.reap()
	wantStats(t, m, "acme", TenantStats{})
}

func TestClose(t *testing.T) {
	d := newFakeDialer()
	m := New(config(3,
		tenantSpec{name: "a", poolSize: 1},
		tenantSpec{name: "b", poolSize: 1},
		tenantSpec{name: "c", poolSize: 1}), WithDialer(d), withInterval(time.Hour))

	inUse := acquire(t, m, "a")
	idle := acquire(t, m, "b")
	m.Release(idle)
	d.set(func(d *fakeDialer) { d.block = true })
	dialing := make(chan result, 1)
	acquireAsync(context.Background(), m, "c", dialing)
	eventually(t, "c dialing", func() bool { return m.Stats()["c"].Dialing == 1 })
	waiters := make(chan result, 2)
	acquireAsync(context.Background(), m, "a", waiters)
	acquireAsync(context.Background(), m, "c", waiters)
	eventually(t, "waiters", func() bool { s := m.Stats(); return s["a"].Waiting == 1 && s["c"].Waiting == 1 })
	checkInvariants(t, m)
	if isClosed(idle) {
		t.Fatal("idle connection closed before Close")
	}

	m.Close()
	for i := 0; i < 2; i++ {
		if r := recv(t, waiters); !errors.Is(r.err, ErrClosed) {
			t.Fatalf("waiter of %s: %v, want ErrClosed", r.tenant, r.err)
		}
	}
	if r := recv(t, dialing); !errors.Is(r.err, ErrClosed) {
		t.Fatalf("dial in progress: %v, want ErrClosed", r.err)
	}
	if !isClosed(idle) || isClosed(inUse) {
		t.Fatalf("idle closed %v, in use closed %v", isClosed(idle), isClosed(inUse))
	}
	if _, err := m.Acquire(context.Background(), "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
	m.Close() // idempotent
	checkInvariants(t, m)
	wantStats(t, m, "a", TenantStats{Open: 1, InUse: 1})
	wantStats(t, m, "b", TenantStats{})
	wantStats(t, m, "c", TenantStats{})

	m.Release(inUse)
	if !isClosed(inUse) {
		t.Fatal("a connection released after Close was not closed")
	}
	checkInvariants(t, m)
	if open, _ := m.Budget(); open != 0 {
		t.Fatalf("budget open = %d after Close", open)
	}
	d.waitClosed(t)
}

func TestConcurrentClose(t *testing.T) {
	m, _ := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 1}))
	c := acquire(t, m, "acme")
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); m.Close() }()
	}
	wg.Wait()
	m.Release(c)
}

func TestBackendStats(t *testing.T) {
	var shared stats.Backend
	m, d := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 2}), WithBackendStats(&shared))
	if m.BackendStats() != &shared {
		t.Fatal("BackendStats is not the struct given to WithBackendStats")
	}
	d.set(func(d *fakeDialer) { d.script = []error{errors.New("boom")} })
	if _, err := m.Acquire(context.Background(), "acme"); err == nil {
		t.Fatal("want the dial error")
	}
	m.Release(acquire(t, m, "acme"))
	if ok, failed := shared.Connects.Get("ok"), shared.Connects.Get("error"); ok != 1 || failed != 1 {
		t.Fatalf("connects ok=%d error=%d", ok, failed)
	}
	if n := shared.ConnectSeconds.Snapshot().Count; n != 2 {
		t.Fatalf("%d dials timed, want 2", n)
	}
	m2, _ := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 1}))
	if m2.BackendStats() == nil || m2.BackendStats() == &shared {
		t.Fatal("a Manager without WithBackendStats needs its own")
	}
}

// A connection whose validation cannot run is discarded, not handed out;
// connections dialed after Suspect are not validated.
func TestSuspectWithoutProtocolState(t *testing.T) {
	m, d := newManager(t, config(10, tenantSpec{name: "acme", poolSize: 2}))
	old := acquire(t, m, "acme")
	m.Suspect() // while old is in use
	fresh := acquire(t, m, "acme")
	m.Release(old)
	m.Release(fresh) // fresh is on top of the idle stack
	if got := acquire(t, m, "acme"); got != fresh {
		t.Fatal("a connection dialed after Suspect was validated")
	}
	got := acquire(t, m, "acme") // old: suspect, fake backends cannot answer
	if got == old || !isClosed(old) {
		t.Fatal("a suspect connection that failed validation was handed out")
	}
	if d.count("acme") != 3 {
		t.Fatalf("dials = %d, want 3", d.count("acme"))
	}
	m.Release(fresh)
	m.Release(got)
}

// A burst of acquires on an empty pool opens connections at most
// maxDialsPerTenant at a time; the rest queue and get either a finished
// dial's slot or a released connection. Nobody fails, and the pool does
// not end up with more connections than it needed.
func TestDialsPerTenantAreBounded(t *testing.T) {
	m, d := newManager(t, config(20, tenantSpec{name: "a", poolSize: 10}))
	gate := make(chan struct{})
	d.set(func(d *fakeDialer) { d.gate = gate })
	const n = 8
	res := make(chan result, n)
	for range n {
		acquireAsync(context.Background(), m, "a", res)
	}
	eventually(t, "the burst to queue", waiting(m, "a", n-maxDialsPerTenant))
	// (A dial is counted as dialing before its goroutine reaches the dialer.)
	eventually(t, "the dials to reach the dialer", func() bool { return d.count("a") >= maxDialsPerTenant })
	if st := m.Stats()["a"]; st.Dialing != maxDialsPerTenant || d.count("a") != maxDialsPerTenant {
		t.Fatalf("dialing %d, dials started %d; want %d", st.Dialing, d.count("a"), maxDialsPerTenant)
	}
	close(gate)
	var got []*Conn
	for range n {
		r := recv(t, res)
		if r.err != nil {
			t.Fatal(r.err)
		}
		got = append(got, r.c)
	}
	if d.count("a") != n {
		t.Fatalf("dials = %d, want %d (one per concurrent client)", d.count("a"), n)
	}
	for _, c := range got {
		m.Release(c)
	}
}

// A caller dialing a new connection takes a connection its tenant releases
// meanwhile, rather than waiting for its slow dial; the dial finishes in
// the background and its connection goes to the pool.
func TestDialingCallerTakesReleasedConnection(t *testing.T) {
	m, d := newManager(t, config(10, tenantSpec{name: "a", poolSize: 3}))
	c1 := acquire(t, m, "a")
	gate := make(chan struct{})
	d.set(func(d *fakeDialer) { d.gate = gate })
	res := make(chan result, 1)
	acquireAsync(context.Background(), m, "a", res)
	eventually(t, "a dialing", func() bool { return m.Stats()["a"].Dialing == 1 })
	m.Release(c1)
	r := recv(t, res)
	if r.err != nil || r.c != c1 {
		t.Fatalf("dialing caller got %v, %v; want the released connection", r.c, r.err)
	}
	close(gate)
	eventually(t, "the background dial to join the pool", func() bool {
		st := m.Stats()["a"]
		return st.Open == 2 && st.Idle == 1 && st.Dialing == 0
	})
	if c := acquire(t, m, "a"); c == c1 || d.count("a") != 2 {
		t.Fatalf("second connection: same as the first %v, dials %d", c == c1, d.count("a"))
	} else {
		m.Release(c)
	}
	m.Release(c1)
}
