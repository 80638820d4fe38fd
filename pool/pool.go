package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgbridge/pgbridge/internal/stats"
	"github.com/pgbridge/pgbridge/routing"
)

// ErrWaitTimeout is returned by Acquire when no backend became free within
// the tenant's pool_wait_timeout.
var ErrWaitTimeout = errors.New("pool: timed out waiting for a backend connection")

// ErrAdmitTimeout is returned by Acquire when the transaction was not
// admitted under backend.max_active_transactions within the tenant's
// pool_wait_timeout. It wraps ErrWaitTimeout.
var ErrAdmitTimeout = fmt.Errorf("%w: the cluster's active-transaction limit stayed reached", ErrWaitTimeout)

// ErrUnknownTenant is returned by Acquire for a tenant the pool does not know.
var ErrUnknownTenant = errors.New("pool: unknown tenant")

// ErrTenantRemoved is returned by Acquire, to callers queued at the time and
// to later ones, for a tenant that Update removed while it still had
// connections or waiters. The session should end with 57P01 (admin
// shutdown). Once the removed tenant's last connection is closed its name
// is forgotten and Acquire returns ErrUnknownTenant, which a session that
// authenticated as that tenant should treat the same way.
var ErrTenantRemoved = errors.New("pool: tenant removed from the configuration")

// ErrClosed is returned by Acquire after Close.
var ErrClosed = errors.New("pool: closed")

// Backoff between dial attempts while the backend is unreachable (up to
// backend.resume_timeout).
const (
	retryBackoffMin = 100 * time.Millisecond
	retryBackoffMax = 2 * time.Second
)

// validateTimeout bounds the validation round trip of a suspect connection
// when backend.connect_timeout is 0.
const validateTimeout = 5 * time.Second

// Dialer opens one authenticated backend connection for a tenant.
type Dialer interface {
	Dial(ctx context.Context, t *routing.Tenant) (*Conn, error)
}

// Option adjusts a Manager; options are test seams.
type Option func(*Manager)

// WithDialer replaces the pgconn dialer (tests use a fake backend). A
// *PgconnDialer given here still follows backend changes made by Update
// (keeping its LookupFunc and Credentials); any other Dialer is kept as is.
func WithDialer(d Dialer) Option { return func(m *Manager) { m.dialer = d } }

// WithLogger sets the logger.
func WithLogger(l *zap.Logger) Option { return func(m *Manager) { m.log = l } }

// WithClock replaces time.Now for idle and lifetime decisions.
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.now = now } }

// WithBackendStats makes the Manager count its dials into s (shared with
// whoever exports metrics) instead of a Backend of its own.
func WithBackendStats(s *stats.Backend) Option { return func(m *Manager) { m.stats = s } }

// TenantStats is a snapshot of one tenant's pool.
type TenantStats struct {
	// Open counts every connection charged to the tenant's pool_size and to
	// the global budget: Idle + InUse + Dialing.
	Open int
	// Idle connections sit in the pool, ready to be handed out.
	Idle int
	// InUse connections are owned by callers between Acquire and
	// Release/Discard (including one being handed to a waiter).
	InUse int
	// Dialing counts reserved slots whose backend connection is being
	// opened (or is about to be, by a waiter that was granted the slot).
	Dialing int
	// Waiting counts Acquire calls queued for a connection.
	Waiting int
	// Active counts the tenant's transactions that count against
	// backend.max_active_transactions (admitted, and not waiting for their
	// client; 0 when there is no limit), and AdmitWaiting the Acquire
	// calls queued for admission.
	Active       int
	AdmitWaiting int
}

// Manager owns every tenant's pool and the backend budget they share.
//
// All state is guarded by one mutex; no I/O happens while it is held. Each
// connection is counted against its tenant's pool_size and the global
// backend.max_connections from the moment its dial is reserved until it is
// closed.
//
// A tenant's reserve is min(reserved_connections, pool_size); its unused
// reserve ("gap") is how far its open connections are below it. Unused
// reserves are budget held back for their tenants: another tenant may open
// a connection only if the free budget exceeds the other tenants' gaps,
// while a tenant below its reserve may use any free slot.
//
// Invariants kept under mu (checked by the tests):
//   - open == sum of tenant open over live and removed pools; each tenant's
//     open == idle + in use + dialing; gap == sum of live tenants' gaps;
//   - a tenant with waiters has no idle connections;
//   - a tenant with waiters and room under its pool_size has no room in the
//     budget (room as defined above) and no other tenant holds an idle
//     connection above its reserve whose closing would give it room;
//   - open + gap <= limit, except after an Update that lowered the budget
//     or raised reserves, until enough connections have come back: so
//     other tenants' demand never takes a tenant's reserve, and a tenant
//     below its reserve gets a connection without waiting;
//   - no connection of a tenant at or below its reserve is closed to give
//     its slot to another tenant.
type Manager struct {
	log      *zap.Logger
	now      func() time.Time
	interval time.Duration // maintenance period; 0 = derived from idle_timeout
	stats    *stats.Backend

	mu      sync.Mutex
	dialer  Dialer
	backend routing.Backend
	limit   int // backend.max_connections
	open    int // connections counted against limit (idle, in use, dialing)
	gap     int // unused reserves of live tenants
	waiting int // waiters over all tenants
	tenants map[string]*tenantPool
	order   []*tenantPool            // live tenants sorted by name, for round-robin tie breaks
	next    int                      // round-robin cursor into order
	retired map[*tenantPool]struct{} // removed tenants that still hold connections
	seq     uint64                   // arrival order of waiters
	// The active-transaction limit (see active.go).
	maxActive    int           // backend.max_active_transactions; 0 = no limit
	active       int           // admitted transactions over all tenants
	admitWaiting int           // admission waiters over all tenants
	admitQueue   []*tenantPool // the tenants with admission waiters, in no order
	suspect      uint64        // Suspect generation
	updates      int           // Update calls
	closed       bool

	// fills runs fill beside the maintenance loop, one at a time, so that
	// a slow min_pool_size dial does not hold up reaping and hand-overs.
	fills   sync.WaitGroup
	filling atomic.Bool

	ctx    context.Context // ends at Close; bounds every dial
	cancel context.CancelFunc
	done   chan struct{} // closed when the maintenance loop has returned
}

type tenantPool struct {
	name    string
	tenant  *routing.Tenant
	idle    []*Conn // stack: the most recently used is reused first
	open    int     // idle + in use + dialing
	dialing int     // reserved slots without a connection yet
	waiters []*waiter
	// dialers are callers dialing a connection of their own who take a
	// connection released meanwhile instead (see dialWaiting); plain
	// waiters come first.
	dialers []*waiter
	params  map[string]string // ParameterStatus of the latest dial
	// active counts the tenant's transactions that count against the
	// active-transaction limit; admitWaiters wait for admission (see
	// active.go).
	active       int
	admitWaiters []*waiter
	removed      bool
	at           int // index in Manager.order
	// epoch changes when the tenant's dial settings (its role, database,
	// password, startup parameters, or the backend endpoint) change;
	// connections dialed under an older epoch are not reused.
	epoch uint64
	// retrying counts the tenant's dials retrying a cluster that does not
	// answer yet (resuming, failing over: see connect); dialErr is the
	// error of its latest failed dial, nil once one succeeds.
	retrying int
	dialErr  error
}

// reserve is the part of the budget guaranteed to the tenant.
func (tp *tenantPool) reserve() int {
	if tp.removed {
		return 0
	}
	return max(0, min(tp.tenant.Policy.ReservedConnections, tp.tenant.Policy.PoolSize))
}

// unused is the tenant's reserve it does not use right now.
func (tp *tenantPool) unused() int { return max(0, tp.reserve()-tp.open) }

type waiter struct {
	ch  chan grant // buffered 1; exactly one grant is ever sent per wait
	seq uint64     // arrival order over all tenants
	// timer bounds a wait by pool_wait_timeout; it stays with the waiter
	// so that a wait allocates nothing.
	timer *time.Timer
	// extended is set (under Manager.mu) while the wait runs past
	// pool_wait_timeout behind the tenant's dials to a late cluster (see
	// await, resuming).
	extended bool
}

// waiters recycles the waiters of acquire: under load most transactions
// wait, and a channel and a timer per wait were a measurable share of the
// router's CPU. A waiter goes back only when it is in no queue and its
// channel is empty.
var waiters = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{ch: make(chan grant, 1), timer: t}
}}

// grant hands a waiter either a ready connection, a reserved slot to dial,
// an admission (see active.go), or an error.
type grant struct {
	conn  *Conn
	dial  bool
	admit bool
	err   error
}

// New builds the pools for cfg and starts the maintenance loop.
func New(cfg *routing.Config, opts ...Option) *Manager {
	m := &Manager{
		log:     zap.NewNop(),
		now:     time.Now,
		tenants: make(map[string]*tenantPool),
		retired: make(map[*tenantPool]struct{}),
		done:    make(chan struct{}),
	}
	for _, o := range opts {
		o(m)
	}
	if m.dialer == nil {
		m.dialer = &PgconnDialer{Backend: cfg.Backend}
	}
	if m.stats == nil {
		m.stats = &stats.Backend{}
	}
	m.backend = cfg.Backend
	m.limit = cfg.Backend.MaxConnections
	m.maxActive = cfg.Backend.MaxActiveTransactions
	for name, t := range cfg.Tenants {
		m.tenants[name] = &tenantPool{name: name, tenant: t}
	}
	m.reorderLocked()
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.maintain()
	return m
}

func (m *Manager) reorderLocked() {
	m.order = m.order[:0]
	m.gap = 0
	for _, tp := range m.tenants {
		m.order = append(m.order, tp)
		m.gap += tp.unused()
	}
	sort.Slice(m.order, func(i, j int) bool { return m.order[i].name < m.order[j].name })
	for i, tp := range m.order {
		tp.at = i
	}
	m.next = 0
}

// chargeLocked counts one more connection for tp; unchargeLocked one less.
func (m *Manager) chargeLocked(tp *tenantPool) {
	m.gap -= tp.unused()
	tp.open++
	m.open++
	m.gap += tp.unused()
}

func (m *Manager) unchargeLocked(tp *tenantPool) {
	m.gap -= tp.unused()
	tp.open--
	m.open--
	m.gap += tp.unused()
	if tp.removed && tp.open == 0 {
		delete(m.retired, tp)
	}
}

// maxDialsPerTenant bounds a tenant's dials in flight. When a burst of
// clients finds the pool empty (a tenant waking up, a failover, a resumed
// cluster), the connections open a couple at a time while the first ones
// already serve the queue, rather than as a thundering herd of backend
// forks and authentications that starves every other tenant's queries on
// the cluster. A tenant below its reserve is not held back.
const maxDialsPerTenant = 2

// roomLocked reports whether tp may open one more connection: it is under
// its pool_size and maxDialsPerTenant, and the free budget covers it
// without touching another tenant's unused reserve. With freed set, it
// answers as if one connection of freed (another tenant) were closed
// first.
func (m *Manager) roomLocked(tp, freed *tenantPool) bool {
	if tp.open >= tp.tenant.Policy.PoolSize {
		return false
	}
	if tp.dialing >= maxDialsPerTenant && tp.open >= tp.reserve() {
		return false // see maxDialsPerTenant; the next finished dial dispatches
	}
	free := m.limit - m.open
	heldBack := m.gap - tp.unused()
	if freed != nil && freed != tp {
		free++
		if !freed.removed && freed.open <= freed.reserve() {
			heldBack++ // closing it opens a gap in freed's reserve
		}
	}
	if tp.open < tp.reserve() {
		return free >= 1
	}
	return free > heldBack
}

// Acquire returns an idle backend connection of the tenant, dials a new one
// if the tenant's pool_size and the global budget allow, or waits in the
// tenant's queue for up to its pool_wait_timeout (0: no limit) or until ctx
// ends.
//
// A connection is checked before it is handed out: an idle one whose
// socket shows the server closed it (or sent something unasked) is
// discarded, and one that Suspect marked is validated with a round trip
// first (see Suspect). A connection that fails is discarded and Acquire
// goes on with the next one, within the same pool_wait_timeout (a fresh
// one if the connection came only after it, the cluster being late).
func (m *Manager) Acquire(ctx context.Context, tenant string) (*Conn, error) {
	return m.acquireConn(ctx, tenant, true)
}

// Probe is Acquire for the router's own short use of a connection, not a
// client's transaction (a login learning the server's parameters): it is
// not admitted under backend.max_active_transactions, so a login never
// waits for other tenants' transactions. Release or Discard it as usual.
func (m *Manager) Probe(ctx context.Context, tenant string) (*Conn, error) {
	return m.acquireConn(ctx, tenant, false)
}

func (m *Manager) acquireConn(ctx context.Context, tenant string, admit bool) (*Conn, error) {
	var deadline time.Time
	renewed := false
	for {
		c, dialed, err := m.acquire(ctx, tenant, &deadline)
		if err != nil {
			return nil, err
		}
		if !renewed && passed(deadline) {
			// The connection came after pool_wait_timeout: a dial, or a
			// wait extended while the cluster resumed, took that long
			// with nothing busy. Validating it, and going on to the next
			// connection if it fails, is an ordinary wait with a
			// pool_wait_timeout of its own (once: if a connection late
			// again fails, the wait is over).
			renewed = true
			deadline = time.Time{}
			if wait := m.waitTimeout(c.tenant); wait > 0 {
				deadline = time.Now().Add(wait)
			}
		}
		if !m.usable(ctx, c, dialed, deadline) {
			m.Discard(c)
			if passed(deadline) {
				return nil, ErrWaitTimeout // validating the rest would take longer still
			}
			continue
		}
		if admit {
			if passed(deadline) {
				// The connection came, or was validated, after
				// pool_wait_timeout (or the fresh one above): a dial, or
				// a wait extended while the cluster resumed, took that
				// long with nothing busy. The wait for admission is an
				// ordinary one, with a pool_wait_timeout of its own (admit
				// sets it), not over before it starts.
				deadline = time.Time{}
			}
			if err := m.admit(ctx, c, &deadline); err != nil {
				m.Release(c) // nothing was sent on it
				return nil, err
			}
		}
		return c, nil
	}
}

// passed reports whether deadline (zero: none) is over.
func passed(deadline time.Time) bool {
	return !deadline.IsZero() && !time.Now().Before(deadline)
}

// acquire is one attempt of Acquire; dialed says the connection is new.
// deadline is the end of the pool_wait_timeout, set on the first attempt.
func (m *Manager) acquire(ctx context.Context, tenant string, deadline *time.Time) (*Conn, bool, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, false, ErrClosed
	}
	tp := m.tenants[tenant]
	if tp == nil {
		err := ErrUnknownTenant
		for r := range m.retired {
			if r.name == tenant {
				err = ErrTenantRemoved
			}
		}
		m.mu.Unlock()
		return nil, false, err
	}
	var doomed []*Conn
	var got *Conn
	for len(tp.idle) > 0 {
		c := tp.idle[len(tp.idle)-1]
		tp.idle[len(tp.idle)-1] = nil
		tp.idle = tp.idle[:len(tp.idle)-1]
		if m.expired(c) || c.epoch != tp.epoch {
			doomed = append(doomed, m.dropLocked(c))
			continue
		}
		c.out = true
		got = c
		break
	}
	var grants []pending
	if got == nil && m.waiting > 0 {
		// Tenants already queued get cold idle slots before this caller.
		grants = m.handOverColdLocked(&doomed)
	}
	reserved := got == nil && m.reserveLocked(tp, &doomed)
	if len(doomed) > 0 {
		// Expired connections freed budget that waiters of other tenants
		// may be queued for.
		grants = append(grants, m.dispatchLocked()...)
	}
	var w *waiter
	if got == nil && !reserved {
		m.seq++
		w = waiters.Get().(*waiter)
		w.seq = m.seq
		w.extended = false
		tp.waiters = append(tp.waiters, w)
		m.waiting++
	}
	if wait := tp.tenant.Policy.PoolWaitTimeout; wait > 0 && deadline.IsZero() {
		*deadline = time.Now().Add(wait)
	}
	m.mu.Unlock()
	closeAll(doomed)
	sendAll(grants)

	switch {
	case got != nil:
		return got, false, nil
	case reserved:
		return m.dialWaiting(ctx, tp)
	}

	g, err := m.await(ctx, tp, w, *deadline, ErrWaitTimeout)
	if err != nil {
		return nil, false, err
	}
	return m.take(ctx, tp, g)
}

// await waits for w's grant until deadline (zero: none), when it fails
// with timeoutErr, or until ctx ends. Every way out leaves w in no queue
// with an empty channel (a grant that raced is received: used at the
// deadline, given back when ctx ended), and w goes back to waiters.
func (m *Manager) await(ctx context.Context, tp *tenantPool, w *waiter, deadline time.Time, timeoutErr error) (grant, error) {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		w.timer.Reset(time.Until(deadline))
		timeout = w.timer.C
	}
	defer func() {
		w.timer.Stop()
		waiters.Put(w)
	}()
	extended := false
	for {
		select {
		case g := <-w.ch:
			return g, nil
		case <-timeout:
			if timeoutErr == ErrWaitTimeout && m.resuming(tp, w) {
				// The tenant's dials are retrying a cluster that does not
				// answer yet (Serverless v2 resuming, a failover), or are
				// still in their attempt with nothing busy: the cluster is
				// late. Wait with them, up to backend.resume_timeout, as
				// the callers that dial do.
				extended = true
				w.timer.Reset(resumePoll)
				continue
			}
			if extended {
				extended = false
				if err := m.dialErr(tp, w); err == nil {
					// The cluster is back (the dial got through): from
					// now on this is an ordinary wait, for a connection
					// to come free, bounded by pool_wait_timeout again.
					if wait := m.waitTimeout(tp); wait > 0 {
						w.timer.Reset(wait)
						continue
					}
				} else if m.cancelWait(tp, w) {
					return grant{}, err // the cluster did not come back
				} else {
					return <-w.ch, nil
				}
			}
			if m.cancelWait(tp, w) {
				return grant{}, timeoutErr
			}
			return <-w.ch, nil
		case <-ctx.Done():
			if !m.cancelWait(tp, w) {
				m.giveBack(tp, <-w.ch)
			}
			return grant{}, ctx.Err()
		}
	}
}

// resumePoll is how often a connection wait past pool_wait_timeout, kept
// going while the cluster is late for the tenant's dials (see await),
// looks again.
const resumePoll = 100 * time.Millisecond

// resuming reports whether the cluster is late for tp: a dial of tp is
// retrying a cluster that does not answer yet, or (with a resume_timeout)
// is in flight while none of tp's connections is busy, so that the dial
// is all the wait is for (a resuming cluster may hold even the first
// attempt up to connect_timeout). If so, w's wait is marked extended, so
// that the failure of such a dial ends it (dial).
func (m *Manager) resuming(tp *tenantPool, w *waiter) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	busy := tp.open - len(tp.idle) - tp.dialing
	if tp.retrying > 0 || (m.backend.ResumeTimeout > 0 && tp.dialing > 0 && busy == 0) {
		w.extended = true
		return true
	}
	return false
}

// waitTimeout is tp's pool_wait_timeout.
func (m *Manager) waitTimeout(tp *tenantPool) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return tp.tenant.Policy.PoolWaitTimeout
}

// dialErr is the error of tp's latest failed dial, nil after a success,
// when w's wait becomes an ordinary one again.
func (m *Manager) dialErr(tp *tenantPool, w *waiter) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tp.dialErr == nil {
		w.extended = false
	}
	return tp.dialErr
}

// peekAfter is how long a connection must have sat idle before its socket
// is peeked on hand-out. Under load connections come back within
// microseconds and the syscall would be pure cost; a server that closed a
// connection in the last moments is the restart a transaction in flight
// would have met anyway.
const peekAfter = 100 * time.Millisecond

// usable checks a connection about to be handed out: one idle for peekAfter
// must not show a closed or talking socket, and one dialed or last validated before
// the latest Suspect is validated with a round trip.
// The validation round trip ends by the end of the caller's
// pool_wait_timeout (waitEnd, zero: none) too, so that a dead server that
// does not even reset its connections costs one wait, not a connect_timeout
// per idle connection.
func (m *Manager) usable(ctx context.Context, c *Conn, dialed bool, waitEnd time.Time) bool {
	if !dialed && m.now().Sub(c.lastUsed) >= peekAfter && !c.alive() {
		m.log.Info("discarding a backend connection the server closed",
			zap.String("tenant", c.Tenant()), zap.Uint32("backend_pid", c.PID))
		return false
	}
	m.mu.Lock()
	gen := m.suspect
	check := c.checked < gen
	timeout := m.backend.ConnectTimeout
	m.mu.Unlock()
	if !check {
		return true
	}
	if timeout <= 0 {
		timeout = validateTimeout
	}
	now := time.Now()
	end := now.Add(timeout)
	if !waitEnd.IsZero() {
		// Not less than minValidate: a healthy connection handed over at
		// the end of the wait still gets its round trip.
		floor := now.Add(minValidate)
		if waitEnd.After(floor) {
			floor = waitEnd
		}
		if floor.Before(end) {
			end = floor
		}
	}
	vctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	ro, err := c.readOnly(vctx)
	if err != nil || ro {
		m.log.Info("discarding a suspect backend connection",
			zap.String("tenant", c.Tenant()), zap.Uint32("backend_pid", c.PID),
			zap.Bool("read_only", ro), zap.Error(err))
		return false
	}
	m.mu.Lock()
	c.checked = gen
	m.mu.Unlock()
	return true
}

// minValidate is the least time a suspect connection's validation gets.
const minValidate = 100 * time.Millisecond

// Suspect marks every backend connection open now (idle, in use or being
// dialed, all tenants) as needing validation before its next hand-out. Call
// it when a backend answered 25006 (read-only: the old writer after a
// failover), 57P01/57P02/57P03, or failed at the connection level: the
// other connections to the same cluster may be on the same dead or demoted
// server. Acquire validates a marked connection with one round trip
// (Conn.readOnly) and discards it, trying the next, if that fails or
// reports read-only; connections dialed after the call are not marked.
// Suspect itself is O(1) and does no I/O.
func (m *Manager) Suspect() {
	m.mu.Lock()
	m.suspect++
	m.mu.Unlock()
}

// cancelWait removes w from tp's queue (of connections or of admissions);
// false means a grant was already (or is being) sent to w.
func (m *Manager) cancelWait(tp *tenantPool, w *waiter) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i := slices.Index(tp.waiters, w); i >= 0 {
		tp.waiters = removeWaiter(tp.waiters, i)
		m.waiting--
		return true
	}
	if i := slices.Index(tp.admitWaiters, w); i >= 0 {
		tp.admitWaiters = removeWaiter(tp.admitWaiters, i)
		m.admitWaiting--
		if len(tp.admitWaiters) == 0 {
			m.unqueueAdmitLocked(tp)
		}
		return true
	}
	return false
}

func (m *Manager) take(ctx context.Context, tp *tenantPool, g grant) (*Conn, bool, error) {
	switch {
	case g.err != nil:
		return nil, false, g.err
	case g.conn != nil:
		return g.conn, false, nil
	default:
		return m.dialWaiting(ctx, tp)
	}
}

// dialWaiting dials a connection for tp on a slot already charged to it,
// and meanwhile takes a connection of tp that another caller releases, if
// that comes first: on a loaded cluster a dial (a backend fork and a
// login) can take far longer than the running transactions, and a caller
// stuck behind its own dial while its tenant's connections come free was
// the worst tail latency of a quiet tenant. A dial that loses the race
// finishes in the background (bounded by connect_timeout, resume_timeout
// and Close) and goes to the pool like a released connection. It reports
// whether the connection returned is a new one.
func (m *Manager) dialWaiting(ctx context.Context, tp *tenantPool) (*Conn, bool, error) {
	type result struct {
		c   *Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := m.dial(context.WithoutCancel(ctx), tp)
		done <- result{c, err}
	}()
	w := &waiter{ch: make(chan grant, 1)}
	m.mu.Lock()
	tp.dialers = append(tp.dialers, w)
	m.mu.Unlock()
	// adopt hands the background dial's connection to the pool; a failure
	// nobody waits for any more is logged (and counted by dialOnce).
	adopt := func() {
		r := <-done
		switch {
		case r.err == nil:
			m.Release(r.c)
		case !errors.Is(r.err, ErrClosed) && !errors.Is(r.err, ErrTenantRemoved):
			m.log.Info("background backend dial failed", zap.String("tenant", tp.name), zap.Error(r.err))
		}
	}
	select {
	case r := <-done:
		if !m.cancelDialer(tp, w) {
			m.giveBack(tp, <-w.ch)
		}
		return r.c, true, r.err
	case g := <-w.ch:
		go adopt()
		return g.conn, false, nil
	case <-ctx.Done():
		if !m.cancelDialer(tp, w) {
			m.giveBack(tp, <-w.ch)
		}
		go adopt()
		return nil, false, ctx.Err()
	}
}

// cancelDialer removes w from tp's dialers; false means a connection was
// already (or is being) sent to w.
func (m *Manager) cancelDialer(tp *tenantPool, w *waiter) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range tp.dialers {
		if x == w {
			tp.dialers = slices.Delete(tp.dialers, i, i+1)
			return true
		}
	}
	return false
}

// giveBack returns a grant its waiter no longer wants.
func (m *Manager) giveBack(tp *tenantPool, g grant) {
	switch {
	case g.err != nil:
	case g.conn != nil:
		m.Release(g.conn)
	case g.admit:
		m.leave(tp)
	default:
		m.mu.Lock()
		tp.dialing--
		m.unchargeLocked(tp)
		grants := m.dispatchLocked()
		m.mu.Unlock()
		sendAll(grants)
	}
}

// reserveLocked counts a new connection for tp if its pool_size and the
// global budget allow. When only the budget is short, an idle connection of
// another tenant above its reserve is closed to make room.
func (m *Manager) reserveLocked(tp *tenantPool, doomed *[]*Conn) bool {
	if tp.open >= tp.tenant.Policy.PoolSize {
		return false
	}
	if !m.roomLocked(tp, nil) {
		victim := m.idleVictimLocked(tp)
		if victim == nil {
			return false
		}
		*doomed = append(*doomed, m.dropLocked(victim))
	}
	m.chargeLocked(tp)
	tp.dialing++
	return true
}

// idleVictimLocked picks, and takes off its stack, the least recently used
// idle connection of a tenant other than tp whose closing gives tp room.
// Only tenants above their reserve give up connections, and a connection
// kept warm for its tenant (see keepWarm) is not taken. Among the rest it
// prefers tenants above their fair share, then above their min_pool_size,
// then tenants holding the most connections.
func (m *Manager) idleVictimLocked(tp *tenantPool) *Conn {
	var best *tenantPool
	var share func(*tenantPool) int
	bestOver, bestAbove := false, false
	for _, o := range m.order {
		if o == tp || len(o.idle) == 0 || o.open <= o.reserve() {
			continue
		}
		if share == nil {
			share = m.sharesLocked(tp)
		}
		// A tenant below its reserve is owed the slot: no warm rule.
		if tp.open >= tp.reserve() && m.warmLocked(o, o.idle[0], share) {
			continue
		}
		over := o.open > share(o)
		above := o.open > o.tenant.Policy.MinPoolSize
		if best == nil || (over && !bestOver) ||
			(over == bestOver && ((above && !bestAbove) || (above == bestAbove && o.open > best.open))) {
			best, bestOver, bestAbove = o, over, above
		}
	}
	if best == nil || !m.roomLocked(tp, best) {
		return nil
	}
	c := best.idle[0] // bottom of the stack: least recently used
	copy(best.idle, best.idle[1:])
	best.idle[len(best.idle)-1] = nil
	best.idle = best.idle[:len(best.idle)-1]
	return c
}

// handOverColdLocked gives waiting tenants the slots of other tenants'
// idle connections that were kept warm when the waiters queued and have
// gone cold since: each such connection is closed and its slot granted to
// the neediest waiting tenant it gives room to.
func (m *Manager) handOverColdLocked(doomed *[]*Conn) []pending {
	var out []pending
	for m.waiting > 0 {
		// The neediest first (below reserve, then the fewest connections
		// for pool_size), round-robin on ties, as dispatchLocked.
		var cands []*tenantPool
		for i := range m.order {
			o := m.order[(m.next+i)%len(m.order)]
			if len(o.waiters) > 0 && o.open < o.tenant.Policy.PoolSize {
				cands = append(cands, o)
			}
		}
		sort.SliceStable(cands, func(i, j int) bool { return needier(cands[i], cands[j]) })
		var taker *tenantPool
		var victim *Conn
		for _, o := range cands {
			if victim = m.idleVictimLocked(o); victim != nil {
				taker = o
				break
			}
		}
		if taker == nil {
			return out
		}
		*doomed = append(*doomed, m.dropLocked(victim))
		out = append(out, m.grantDialLocked(taker))
	}
	return out
}

// needier reports whether o comes before b for free budget: below its
// reserve first, then the fewest connections relative to pool_size.
func needier(o, b *tenantPool) bool {
	if ou, bu := o.open < o.reserve(), b.open < b.reserve(); ou != bu {
		return ou
	}
	return o.open*b.tenant.Policy.PoolSize < b.open*o.tenant.Policy.PoolSize
}

// dial opens the connection for a slot already reserved for tp and settles
// the reservation: on success the slot becomes an in-use connection, on
// failure it is freed for waiters. If an Update changes the tenant's dial
// settings meanwhile, the connection is closed and dialed again with the
// new ones.
func (m *Manager) dial(ctx context.Context, tp *tenantPool) (*Conn, error) {
	for {
		c, epoch, gen, err := m.connect(ctx, tp)

		var doomed *Conn
		m.mu.Lock()
		switch {
		case m.closed:
			doomed, err = c, ErrClosed
		case tp.removed:
			doomed, err = c, ErrTenantRemoved
		case err == nil && tp.epoch != epoch:
			m.mu.Unlock()
			c.close()
			continue
		}
		tp.dialing--
		if err != nil {
			var grants []pending
			if doomed == nil {
				tp.dialErr = err
				// Callers that waited past pool_wait_timeout for the
				// cluster to come back get the error now: granting them
				// the slot would start another resume_timeout of retries,
				// and the rest of the queue would wait behind that too.
				grants = m.failExtendedLocked(tp, err)
			}
			m.unchargeLocked(tp)
			grants = append(grants, m.dispatchLocked()...)
			m.mu.Unlock()
			if doomed != nil {
				doomed.close()
			}
			sendAll(grants)
			return nil, err
		}
		c.tenant = tp
		c.created = m.now()
		c.lastUsed = c.created
		c.out = true
		c.epoch = epoch
		c.checked = gen
		tp.params = c.Params
		tp.dialErr = nil
		grants := m.dispatchLocked() // a dial slot is free for the queue
		m.mu.Unlock()
		sendAll(grants)
		return c, nil
	}
}

// failExtendedLocked ends, with err, the waits of tp that run past
// pool_wait_timeout behind its dials (see resuming).
func (m *Manager) failExtendedLocked(tp *tenantPool, err error) []pending {
	var out []pending
	for i := 0; i < len(tp.waiters); {
		if w := tp.waiters[i]; w.extended {
			tp.waiters = removeWaiter(tp.waiters, i)
			m.waiting--
			out = append(out, pending{w, grant{err: err}})
			continue
		}
		i++
	}
	return out
}

// connect dials one backend connection for tp, retrying transient
// failures with backoff for up to backend.resume_timeout (a Serverless v2
// cluster resuming from zero capacity, a writer failover). Each attempt
// takes the settings in force when it starts, so an Update during the
// retries is followed, and is bounded by backend.connect_timeout; Close
// ends every dial. It returns the tenant epoch and Suspect generation of
// the successful attempt.
func (m *Manager) connect(ctx context.Context, tp *tenantPool) (c *Conn, epoch, gen uint64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel)
	defer stop()

	start := time.Now()
	backoff := retryBackoffMin
	retrying := false
	defer func() {
		if retrying {
			m.mu.Lock()
			// (Before a waiter past its deadline sees no retry: nil on a
			// success, which dial would record only after.)
			tp.dialErr = err
			tp.retrying--
			m.mu.Unlock()
		}
	}()
	for attempt := 1; ; attempt++ {
		m.mu.Lock()
		d, b, t := m.dialer, m.backend, tp.tenant
		epoch, gen = tp.epoch, m.suspect
		m.mu.Unlock()
		c, err = m.dialOnce(ctx, d, b, t)
		if err == nil {
			return c, epoch, gen, nil
		}
		if b.ResumeTimeout <= 0 || ctx.Err() != nil || !retryable(err) {
			return nil, 0, 0, err
		}
		left := b.ResumeTimeout - time.Since(start)
		if left <= 0 {
			return nil, 0, 0, fmt.Errorf("pool: backend unreachable for %s: %w", b.ResumeTimeout, err)
		}
		if !retrying {
			// Waiters queued behind this dial wait for it past their
			// pool_wait_timeout (await).
			retrying = true
			m.mu.Lock()
			tp.retrying++
			m.mu.Unlock()
		}
		wait := min(backoff/2+rand.N(backoff/2+1), left) // jitter spreads a crowd of retries
		m.log.Info("backend dial failed, retrying",
			zap.String("tenant", t.Name), zap.Int("attempt", attempt),
			zap.Duration("backoff", wait), zap.Error(err))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, 0, 0, err
		case <-timer.C:
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
}

// dialOnce is one dial attempt, timed and counted in the backend stats.
func (m *Manager) dialOnce(ctx context.Context, d Dialer, b routing.Backend, t *routing.Tenant) (*Conn, error) {
	if ct := b.ConnectTimeout; ct > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ct)
		defer cancel()
	}
	start := time.Now()
	c, err := d.Dial(ctx, t)
	if err == nil && c == nil {
		err = errors.New("pool: dialer returned no connection")
	}
	m.stats.ConnectSeconds.Observe(time.Since(start))
	if err != nil {
		m.stats.Connects.Inc("error")
	} else {
		m.stats.Connects.Inc("ok")
	}
	return c, err
}

// retryable reports whether a dial failure may go away by itself: the
// server is unreachable, starting up, shutting down or full. Wrong
// credentials, a missing database or a TLS verification failure are not.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P03", // admin/crash shutdown, cannot connect now
			"53300": // too many connections
			return true
		}
		return strings.HasPrefix(pe.Code, "08")
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || // one attempt's connect_timeout
		errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Release gives back a connection that is idle (ReadyForQuery 'I' was the
// last thing it sent and nothing is unread), once a cancel request being
// sent for it is delivered (HoldForCancel). It is handed to a waiter of its
// tenant, kept idle, or closed when the pool must shrink, its settings
// changed, or another tenant needs the budget more.
func (m *Manager) Release(c *Conn) {
	tp := c.tenant
	c.WaitCancel() // a cancel request on its way must not hit the next user
	m.mu.Lock()
	if !c.out {
		m.mu.Unlock()
		m.log.DPanic("connection released twice or not from this pool", zap.String("tenant", tp.name))
		return
	}
	c.lastUsed = m.now()
	var doomed *Conn
	var grants []pending
	// handoff is the one waiter that gets c or its slot: the common case
	// under load, kept out of a slice so that it allocates nothing.
	var handoff pending
	admit := m.setAdmitLocked(c, admitNone)
	if m.closed || tp.removed || m.expired(c) || c.epoch != tp.epoch ||
		tp.open > tp.tenant.Policy.PoolSize || m.open > m.limit {
		c.out = false
		doomed = m.dropLocked(c)
		grants = m.dispatchLocked()
	} else if o := m.takerLocked(tp); o != nil {
		c.out = false
		doomed = m.dropLocked(c)
		handoff = m.grantDialLocked(o)
	} else if len(tp.waiters) > 0 {
		handoff = pending{m.popWaiterLocked(tp), grant{conn: c}}
	} else if len(tp.dialers) > 0 {
		w := tp.dialers[0]
		tp.dialers = slices.Delete(tp.dialers, 0, 1)
		handoff = pending{w, grant{conn: c}}
	} else {
		c.out = false
		tp.idle = append(tp.idle, c)
	}
	m.mu.Unlock()
	if doomed != nil {
		doomed.close()
	}
	sendAll(grants)
	handoff.send()
	admit.send()
}

// takerLocked returns the tenant, other than tp, that should get the slot
// of a connection tp is releasing, or nil if tp keeps it. Only a tenant
// above its reserve gives up a slot, and only to a waiting tenant that has
// room once the connection is closed. In order:
//
//  1. a waiting tenant below its reserve;
//  2. when tp has no waiter of its own: if tp holds more than its fair
//     share, the neediest waiting tenant; else the neediest waiting tenant
//     below its own share. A tenant within its share keeps the connection
//     it just used otherwise (see keepWarm): handing it over would cost
//     both tenants a dial at the next query, and under a tight budget that
//     churn is what made every query of a quiet tenant wait for one;
//  3. when tp holds more than its fair share, the neediest waiting tenant
//     below its own share;
//  4. a waiting tenant that holds nothing at all (the one whose first
//     waiter came first): when the budget is smaller than the number of
//     busy tenants, slots rotate among them, each switch costing a dial,
//     so that no tenant starves however many clients the others queue.
func (m *Manager) takerLocked(tp *tenantPool) *tenantPool {
	if m.waiting == len(tp.waiters) || tp.open <= tp.reserve() {
		return nil
	}
	o := m.neediestLocked(tp, nil, tp)
	if o == nil || o.open < o.reserve() {
		return o
	}
	share := m.sharesLocked(nil)
	if len(tp.waiters) == 0 {
		if tp.open > share(tp) {
			return o
		}
		return m.neediestLocked(tp, share, tp)
	}
	if tp.open > share(tp) {
		if o := m.neediestLocked(tp, share, tp); o != nil {
			return o
		}
	}
	var starved *tenantPool
	for _, o := range m.order {
		if o != tp && o.open == 0 && len(o.waiters) > 0 &&
			(starved == nil || o.waiters[0].seq < starved.waiters[0].seq) && m.roomLocked(o, tp) {
			starved = o
		}
	}
	return starved
}

// sharesLocked returns each tenant's fair share of the budget: the budget
// not held back for idle tenants' reserves, split by pool_size among the
// tenants that want connections (waiting or holding some, and asking, when
// it is set), rounded to nearest, never below the tenant's reserve and
// never below 1.
func (m *Manager) sharesLocked(asking *tenantPool) func(*tenantPool) int {
	weight, held := 0, 0
	for _, o := range m.order {
		if len(o.waiters) > 0 || o.open > 0 || o == asking {
			weight += o.tenant.Policy.PoolSize
		} else {
			held += o.unused()
		}
	}
	avail := max(0, m.limit-held)
	return func(o *tenantPool) int {
		if weight == 0 {
			return max(1, o.reserve())
		}
		// Flooring would hand the remainder to whoever holds it, which
		// favours large tenants.
		return max(1, o.reserve(), (2*avail*o.tenant.Policy.PoolSize+weight)/(2*weight))
	}
}

// keepWarm is how long an idle connection stays its tenant's while the
// tenant holds no more than its fair share: other tenants' waiters do not
// take it before. A tenant that comes back within keepWarm finds its
// connection; one that stays away longer gives the slot to whoever waits
// (at the next maintenance round, or the next acquire).
const keepWarm = time.Second

// warmLocked reports whether o's idle connection c is kept for o: used
// within keepWarm while o holds at most its fair share.
func (m *Manager) warmLocked(o *tenantPool, c *Conn, share func(*tenantPool) int) bool {
	return m.now().Sub(c.lastUsed) < keepWarm && o.open <= share(o)
}

// Discard closes a connection whose state is unknown or broken and frees its
// slot for a waiter.
func (m *Manager) Discard(c *Conn) {
	m.mu.Lock()
	if !c.out {
		m.mu.Unlock()
		m.log.DPanic("connection discarded twice or not from this pool", zap.String("tenant", c.tenant.name))
		return
	}
	c.out = false
	admit := m.setAdmitLocked(c, admitNone)
	m.dropLocked(c)
	grants := m.dispatchLocked()
	m.mu.Unlock()
	c.close()
	sendAll(grants)
	admit.send()
}

func (m *Manager) dropLocked(c *Conn) *Conn {
	m.unchargeLocked(c.tenant)
	return c
}

type pending struct {
	w *waiter
	g grant
}

// send delivers p's grant, if p has a waiter.
func (p pending) send() {
	if p.w != nil {
		p.w.ch <- p.g
	}
}

func sendAll(ps []pending) {
	for _, p := range ps {
		p.w.ch <- p.g
	}
}

func closeAll(cs []*Conn) {
	for _, c := range cs {
		c.close()
	}
}

func (m *Manager) popWaiterLocked(tp *tenantPool) *waiter {
	w := tp.waiters[0]
	tp.waiters = removeWaiter(tp.waiters, 0)
	m.waiting--
	return w
}

// grantDialLocked reserves a slot for tp's first waiter, which will dial.
// The round-robin cursor moves past tp.
func (m *Manager) grantDialLocked(tp *tenantPool) pending {
	if !tp.removed && len(m.order) > 0 {
		m.next = (tp.at + 1) % len(m.order)
	}
	m.chargeLocked(tp)
	tp.dialing++
	return pending{m.popWaiterLocked(tp), grant{dial: true}}
}

// dispatchLocked hands free budget to waiting tenants, those below their
// reserve first, then the neediest (the fewest connections relative to
// pool_size), so that one tenant's queue cannot starve another's.
func (m *Manager) dispatchLocked() []pending {
	var out []pending
	for m.waiting > 0 && m.open < m.limit {
		tp := m.neediestLocked(nil, nil, nil)
		if tp == nil {
			break
		}
		out = append(out, m.grantDialLocked(tp))
	}
	return out
}

// neediestLocked returns the tenant other than skip that has a waiter and
// room (as if a connection of freed were closed first, when freed is set)
// and, when below is set, fewer connections than below says. Tenants below
// their reserve come first; otherwise the one holding the fewest
// connections relative to its pool_size wins; ties go round-robin.
func (m *Manager) neediestLocked(skip *tenantPool, below func(*tenantPool) int, freed *tenantPool) *tenantPool {
	if m.waiting == 0 || (skip != nil && m.waiting == len(skip.waiters)) {
		return nil
	}
	n := len(m.order)
	var best *tenantPool
	bestUnder := false
	for i := 0; i < n; i++ {
		at := (m.next + i) % n
		o := m.order[at]
		if o == skip || len(o.waiters) == 0 || (below != nil && o.open >= below(o)) || !m.roomLocked(o, freed) {
			continue
		}
		under := o.open < o.reserve()
		ps, bps := o.tenant.Policy.PoolSize, 0
		if best != nil {
			bps = best.tenant.Policy.PoolSize
		}
		// o.open/ps < best.open/bps, without division.
		if best == nil || (under && !bestUnder) || (under == bestUnder && o.open*bps < best.open*ps) {
			best, bestUnder = o, under
		}
	}
	return best
}

func (m *Manager) expired(c *Conn) bool {
	return m.backend.MaxLifetime > 0 && m.now().Sub(c.created) >= m.backend.MaxLifetime
}

// Update applies a new configuration to the live pools:
//
//   - added tenants get pools at once;
//   - a removed tenant's waiters fail with ErrTenantRemoved, its idle
//     connections close, its connections in use close when released, and
//     Acquire for it returns ErrTenantRemoved until the last one is gone;
//   - limits (pool_size, min_pool_size, reserved_connections,
//     pool_wait_timeout, backend.max_connections, idle_timeout,
//     max_lifetime) apply at once: idle connections beyond a lowered
//     pool_size or budget close now, connections in use close as they come
//     back, and waiters that a raised limit admits are granted now;
//   - changed dial settings (backend host, port, TLS, aws_region; a
//     tenant's database, backend user, password, auth, statement_timeout or
//     idle_in_transaction_timeout) apply to new dials: idle connections
//     dialed with the old settings close now, those in use when released,
//     and dials in progress are redone.
//
// Tenants whose settings did not change keep their connections. cfg must be
// a loaded, validated configuration; after Close, Update does nothing.
func (m *Manager) Update(cfg *routing.Config) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.updates++
	endpoint := dialChanged(m.backend, cfg.Backend)
	if pd, ok := m.dialer.(*PgconnDialer); ok {
		m.dialer = pd.withBackend(cfg.Backend) // reads the CA file again
	}
	m.backend = cfg.Backend
	m.limit = cfg.Backend.MaxConnections
	m.maxActive = cfg.Backend.MaxActiveTransactions

	var doomed []*Conn
	var grants []pending
	closeIdle := func(tp *tenantPool) {
		for _, c := range tp.idle {
			doomed = append(doomed, m.dropLocked(c))
		}
		tp.idle = nil
	}
	for name, tp := range m.tenants {
		nt := cfg.Tenants[name]
		if nt == nil {
			closeIdle(tp)
			for _, w := range tp.waiters {
				grants = append(grants, pending{w, grant{err: ErrTenantRemoved}})
			}
			m.waiting -= len(tp.waiters)
			tp.waiters = nil
			grants = m.failAdmitWaitersLocked(tp, ErrTenantRemoved, grants)
			tp.removed = true
			delete(m.tenants, name)
			if tp.open > 0 {
				m.retired[tp] = struct{}{}
			}
			m.log.Info("tenant removed", zap.String("tenant", name), zap.Int("open", tp.open))
			continue
		}
		if endpoint || tenantDialChanged(tp.tenant, nt) {
			tp.epoch++
			closeIdle(tp)
		}
		tp.tenant = nt
	}
	for name, nt := range cfg.Tenants {
		if m.tenants[name] == nil {
			m.tenants[name] = &tenantPool{name: name, tenant: nt}
		}
	}
	m.reorderLocked()

	// Shrink what is idle beyond a lowered pool_size, then beyond a
	// lowered budget (least recently used first, tenants above their
	// reserve first).
	for _, tp := range m.order {
		for tp.open > tp.tenant.Policy.PoolSize && len(tp.idle) > 0 {
			doomed = append(doomed, m.dropLocked(m.popLRULocked(tp)))
		}
	}
	for m.open > m.limit {
		var victim *tenantPool
		for _, tp := range m.order {
			if len(tp.idle) > 0 && (victim == nil || (tp.open > tp.reserve()) && victim.open <= victim.reserve()) {
				victim = tp
			}
		}
		if victim == nil {
			break
		}
		doomed = append(doomed, m.dropLocked(m.popLRULocked(victim)))
	}

	// A raised (or lifted) active-transaction limit admits waiters.
	grants = m.dispatchAdmitsLocked(grants)

	// Admit waiters: free budget first, then by closing idle connections
	// of tenants above their reserve where that gives a waiter room.
	grants = append(grants, m.dispatchLocked()...)
	for m.waiting > 0 {
		var to *tenantPool
		for _, tp := range m.order {
			if len(tp.waiters) == 0 || tp.open >= tp.tenant.Policy.PoolSize {
				continue
			}
			if v := m.idleVictimLocked(tp); v != nil {
				doomed = append(doomed, m.dropLocked(v))
				to = tp
				break
			}
		}
		if to == nil {
			break
		}
		grants = append(grants, m.grantDialLocked(to))
		grants = append(grants, m.dispatchLocked()...)
	}
	m.mu.Unlock()
	closeAll(doomed)
	sendAll(grants)
}

// popLRULocked takes the least recently used idle connection of tp.
func (m *Manager) popLRULocked(tp *tenantPool) *Conn {
	c := tp.idle[0]
	copy(tp.idle, tp.idle[1:])
	tp.idle[len(tp.idle)-1] = nil
	tp.idle = tp.idle[:len(tp.idle)-1]
	return c
}

// dialChanged reports whether connections to a and b differ in where or how
// they connect.
func dialChanged(a, b routing.Backend) bool {
	return a.Host != b.Host || a.Port != b.Port || a.TLS != b.TLS || a.AWSRegion != b.AWSRegion
}

// tenantDialChanged reports whether a tenant's connections would be dialed
// differently: another role, database, secret or startup parameters.
func tenantDialChanged(a, b *routing.Tenant) bool {
	return a.Database != b.Database || a.BackendUser != b.BackendUser ||
		a.BackendPassword != b.BackendPassword || a.BackendAuth != b.BackendAuth ||
		!maps.Equal(RuntimeParams(a.Policy), RuntimeParams(b.Policy))
}

// Params returns a copy of the ParameterStatus values of the tenant's most
// recent backend connection, or nil if none was dialed yet.
func (m *Manager) Params(tenant string) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tp := m.tenants[tenant]; tp != nil {
		return maps.Clone(tp.params)
	}
	return nil
}

// Stats returns a snapshot of every configured tenant's pool, by tenant
// name. Removed tenants are not listed, though their connections still in
// use count in Budget until they are released.
func (m *Manager) Stats() map[string]TenantStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]TenantStats, len(m.tenants))
	for name, tp := range m.tenants {
		out[name] = TenantStats{
			Open:    tp.open,
			Idle:    len(tp.idle),
			InUse:   tp.open - len(tp.idle) - tp.dialing,
			Dialing: tp.dialing,
			Waiting: len(tp.waiters),

			Active:       tp.active,
			AdmitWaiting: len(tp.admitWaiters),
		}
	}
	return out
}

// IdleConn describes one idle backend connection (for the admin console).
type IdleConn struct {
	Tenant   string
	PID      uint32
	Created  time.Time
	LastUsed time.Time
}

// IdleConns lists the idle connections of every configured tenant, by
// tenant name and then most recently used first.
func (m *Manager) IdleConns() []IdleConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []IdleConn
	for _, tp := range m.order {
		for i := len(tp.idle) - 1; i >= 0; i-- {
			c := tp.idle[i]
			out = append(out, IdleConn{Tenant: tp.name, PID: c.PID, Created: c.created, LastUsed: c.lastUsed})
		}
	}
	return out
}

// Budget returns how many backend connections are counted against the
// global budget (idle, in use and dialing, over all tenants, removed ones
// included) and the budget itself (backend.max_connections).
func (m *Manager) Budget() (open, limit int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.open, m.limit
}

// ActiveTransactions returns how many transactions count against
// backend.max_active_transactions, over all tenants, and the limit (0: no
// limit, and nothing is counted).
func (m *Manager) ActiveTransactions() (active, limit int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active, m.maxActive
}

// BackendStats returns the live dial counters: attempts by result ("ok",
// "error") and their durations, retries included.
func (m *Manager) BackendStats() *stats.Backend { return m.stats }

// Close stops maintenance, ends dials in progress, closes idle connections
// and fails waiters with ErrClosed. It is idempotent. Connections in use are
// closed when they are released.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		<-m.done
		return
	}
	m.closed = true
	var doomed []*Conn
	var grants []pending
	for _, tp := range m.order {
		for _, c := range tp.idle {
			doomed = append(doomed, m.dropLocked(c))
		}
		tp.idle = nil
		for _, w := range tp.waiters {
			grants = append(grants, pending{w, grant{err: ErrClosed}})
		}
		tp.waiters = nil
		grants = m.failAdmitWaitersLocked(tp, ErrClosed, grants)
	}
	m.waiting = 0
	m.mu.Unlock()
	m.cancel()
	closeAll(doomed)
	sendAll(grants)
	<-m.done
}

// maintain closes connections idle past backend.idle_timeout or older than
// max_lifetime, keeping min_pool_size per tenant, and opens connections up
// to min_pool_size. Its period follows idle_timeout (a quarter of it, at
// most a second), read again each round.
func (m *Manager) maintain() {
	defer close(m.done)
	defer m.fills.Wait()
	t := time.NewTimer(m.period())
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.reap()
			if m.filling.CompareAndSwap(false, true) {
				m.fills.Add(1)
				go func() {
					defer m.fills.Done()
					defer m.filling.Store(false)
					m.fill()
				}()
			}
			t.Reset(m.period())
		}
	}
}

func (m *Manager) period() time.Duration {
	if m.interval > 0 {
		return m.interval
	}
	m.mu.Lock()
	idle := m.backend.IdleTimeout
	m.mu.Unlock()
	d := time.Second
	if it := idle / 4; it > 0 && it < d {
		d = max(it, time.Millisecond)
	}
	return d
}

func (m *Manager) reap() {
	m.mu.Lock()
	now := m.now()
	var doomed []*Conn
	for _, tp := range m.order {
		keep := tp.idle[:0]
		// The stack's bottom holds the least recently used: close from
		// there, but never below min_pool_size for idleness.
		for _, c := range tp.idle {
			idleTooLong := m.backend.IdleTimeout > 0 && now.Sub(c.lastUsed) >= m.backend.IdleTimeout
			aboveMin := tp.open > tp.tenant.Policy.MinPoolSize
			if (idleTooLong && aboveMin) || m.expired(c) {
				doomed = append(doomed, m.dropLocked(c))
				continue
			}
			keep = append(keep, c)
		}
		clear(tp.idle[len(keep):])
		tp.idle = keep
	}
	grants := m.dispatchLocked()
	grants = append(grants, m.handOverColdLocked(&doomed)...)
	m.mu.Unlock()
	closeAll(doomed)
	sendAll(grants)
}

// fill opens connections, one at a time, for tenants below min_pool_size
// while the budget has room for them. A tenant whose dial fails is skipped
// until the next round; the round ends after as many dials as were missing
// when it began, so connections that do not stay (an immediately expiring
// max_lifetime) cannot make it spin.
func (m *Manager) fill() {
	m.mu.Lock()
	missing := 0
	for _, tp := range m.order {
		missing += max(0, tp.tenant.Policy.MinPoolSize-tp.open)
	}
	m.mu.Unlock()
	failed := map[*tenantPool]bool{}
	for ; missing > 0; missing-- {
		m.mu.Lock()
		var target *tenantPool
		if !m.closed {
			for _, tp := range m.order {
				if !failed[tp] && tp.open < tp.tenant.Policy.MinPoolSize && m.roomLocked(tp, nil) {
					target = tp
					break
				}
			}
		}
		if target == nil {
			m.mu.Unlock()
			return
		}
		m.chargeLocked(target)
		target.dialing++
		m.mu.Unlock()
		c, err := m.dial(context.Background(), target) // Close ends it
		if err != nil {
			if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrTenantRemoved) {
				m.log.Info("min_pool_size dial failed", zap.String("tenant", target.name), zap.Error(err))
			}
			failed[target] = true
			continue
		}
		m.Release(c)
	}
}

// String is for debugging.
func (m *Manager) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("pool: %d/%d backend connections", m.open, m.limit)
}
