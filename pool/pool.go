package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgbridge/pgbridge/routing"
)

// ErrWaitTimeout is returned by Acquire when no backend became free within
// the tenant's pool_wait_timeout.
var ErrWaitTimeout = errors.New("pool: timed out waiting for a backend connection")

// ErrUnknownTenant is returned by Acquire for a tenant the pool does not know.
var ErrUnknownTenant = errors.New("pool: unknown tenant")

// ErrClosed is returned by Acquire after Close.
var ErrClosed = errors.New("pool: closed")

// Backoff between dial attempts while the backend is unreachable (up to
// backend.resume_timeout).
const (
	retryBackoffMin = 100 * time.Millisecond
	retryBackoffMax = 2 * time.Second
)

// Dialer opens one authenticated backend connection for a tenant.
type Dialer interface {
	Dial(ctx context.Context, t *routing.Tenant) (*Conn, error)
}

// Option adjusts a Manager; options are test seams.
type Option func(*Manager)

// WithDialer replaces the pgconn dialer (tests use a fake backend).
func WithDialer(d Dialer) Option { return func(m *Manager) { m.dialer = d } }

// WithLogger sets the logger.
func WithLogger(l *zap.Logger) Option { return func(m *Manager) { m.log = l } }

// WithClock replaces time.Now for idle and lifetime decisions.
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.now = now } }

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
}

// Manager owns every tenant's pool and the backend budget they share.
//
// All state is guarded by one mutex; no I/O happens while it is held. Each
// connection is counted against its tenant's pool_size and the global
// backend.max_connections from the moment its dial is reserved until it is
// closed.
//
// Invariants kept under mu (checked by the tests):
//   - open == sum of tenant open; each tenant's open == idle + in use + dialing;
//   - a tenant with waiters has no idle connections;
//   - a tenant with waiters and room under its pool_size only exists while
//     the budget is full and no other tenant has an idle connection.
type Manager struct {
	dialer   Dialer
	log      *zap.Logger
	now      func() time.Time
	interval time.Duration // maintenance period; 0 = derived from idle_timeout

	backend routing.Backend // immutable after New

	mu      sync.Mutex
	limit   int // backend.max_connections
	open    int // connections counted against limit (idle, in use, dialing)
	waiting int // waiters over all tenants
	tenants map[string]*tenantPool
	order   []*tenantPool // sorted by name, for round-robin tie breaks
	next    int           // round-robin cursor into order
	closed  bool

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
	params  map[string]string // ParameterStatus of the latest dial
	removed bool
}

type waiter struct {
	ch chan grant // buffered 1; exactly one grant is ever sent
}

// grant hands a waiter either a ready connection, a reserved slot to dial,
// or an error.
type grant struct {
	conn *Conn
	dial bool
	err  error
}

// New builds the pools for cfg and starts the maintenance loop.
func New(cfg *routing.Config, opts ...Option) *Manager {
	m := &Manager{
		log:     zap.NewNop(),
		now:     time.Now,
		tenants: make(map[string]*tenantPool),
		done:    make(chan struct{}),
	}
	for _, o := range opts {
		o(m)
	}
	if m.dialer == nil {
		m.dialer = &PgconnDialer{Backend: cfg.Backend}
	}
	m.backend = cfg.Backend
	m.limit = cfg.Backend.MaxConnections
	for name, t := range cfg.Tenants {
		m.tenants[name] = &tenantPool{name: name, tenant: t}
	}
	m.reorderLocked()
	if m.interval <= 0 {
		m.interval = time.Second
		if it := m.backend.IdleTimeout / 4; it > 0 && it < m.interval {
			m.interval = it
		}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.maintain()
	return m
}

func (m *Manager) reorderLocked() {
	m.order = m.order[:0]
	for _, tp := range m.tenants {
		m.order = append(m.order, tp)
	}
	sort.Slice(m.order, func(i, j int) bool { return m.order[i].name < m.order[j].name })
	m.next = 0
}

// Acquire returns an idle backend connection of the tenant, dials a new one
// if the tenant's pool_size and the global budget allow, or waits in the
// tenant's queue for up to its pool_wait_timeout (0: no limit) or until ctx
// ends.
func (m *Manager) Acquire(ctx context.Context, tenant string) (*Conn, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	tp := m.tenants[tenant]
	if tp == nil || tp.removed {
		m.mu.Unlock()
		return nil, ErrUnknownTenant
	}
	var doomed []*Conn
	var got *Conn
	for len(tp.idle) > 0 {
		c := tp.idle[len(tp.idle)-1]
		tp.idle[len(tp.idle)-1] = nil
		tp.idle = tp.idle[:len(tp.idle)-1]
		if m.expired(c) {
			doomed = append(doomed, m.dropLocked(c))
			continue
		}
		c.out = true
		got = c
		break
	}
	reserved := got == nil && m.reserveLocked(tp, &doomed)
	var grants []pending
	if len(doomed) > 0 {
		// Expired connections freed budget that waiters of other tenants
		// may be queued for.
		grants = m.dispatchLocked()
	}
	var w *waiter
	if got == nil && !reserved {
		w = &waiter{ch: make(chan grant, 1)}
		tp.waiters = append(tp.waiters, w)
		m.waiting++
	}
	wait := tp.tenant.Policy.PoolWaitTimeout
	m.mu.Unlock()
	closeAll(doomed)
	sendAll(grants)

	switch {
	case got != nil:
		return got, nil
	case reserved:
		return m.dial(ctx, tp)
	}

	var timeout <-chan time.Time
	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case g := <-w.ch:
		return m.take(ctx, tp, g)
	case <-timeout:
		if m.cancelWait(tp, w) {
			return nil, ErrWaitTimeout
		}
		// A grant raced with the timeout; it is ours, use it.
		return m.take(ctx, tp, <-w.ch)
	case <-ctx.Done():
		if !m.cancelWait(tp, w) {
			// A grant raced with the cancellation: the caller no longer
			// wants it, so pass it on rather than lose it.
			m.giveBack(tp, <-w.ch)
		}
		return nil, ctx.Err()
	}
}

// cancelWait removes w from tp's queue; false means a grant was already
// (or is being) sent to w.
func (m *Manager) cancelWait(tp *tenantPool, w *waiter) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range tp.waiters {
		if x == w {
			copy(tp.waiters[i:], tp.waiters[i+1:])
			tp.waiters[len(tp.waiters)-1] = nil
			tp.waiters = tp.waiters[:len(tp.waiters)-1]
			m.waiting--
			return true
		}
	}
	return false
}

func (m *Manager) take(ctx context.Context, tp *tenantPool, g grant) (*Conn, error) {
	switch {
	case g.err != nil:
		return nil, g.err
	case g.conn != nil:
		return g.conn, nil
	default:
		return m.dial(ctx, tp)
	}
}

// giveBack returns a grant its waiter no longer wants.
func (m *Manager) giveBack(tp *tenantPool, g grant) {
	switch {
	case g.err != nil:
	case g.conn != nil:
		m.Release(g.conn)
	default:
		m.mu.Lock()
		tp.dialing--
		m.open--
		tp.open--
		grants := m.dispatchLocked()
		m.mu.Unlock()
		sendAll(grants)
	}
}

// reserveLocked counts a new connection for tp if its pool_size and the
// global budget allow. When only the budget is short, an idle connection of
// another tenant is closed to make room.
func (m *Manager) reserveLocked(tp *tenantPool, doomed *[]*Conn) bool {
	if tp.open >= tp.tenant.Policy.PoolSize {
		return false
	}
	if m.open >= m.limit {
		victim := m.idleVictimLocked(tp)
		if victim == nil {
			return false
		}
		*doomed = append(*doomed, m.dropLocked(victim))
	}
	m.open++
	tp.open++
	tp.dialing++
	return true
}

// idleVictimLocked picks the least recently used idle connection of a tenant
// other than tp, preferring tenants above their min_pool_size, then tenants
// holding the most connections.
func (m *Manager) idleVictimLocked(tp *tenantPool) *Conn {
	var best *tenantPool
	bestAbove := false
	for _, o := range m.order {
		if o == tp || len(o.idle) == 0 {
			continue
		}
		above := o.open > o.tenant.Policy.MinPoolSize
		if best == nil || (above && !bestAbove) || (above == bestAbove && o.open > best.open) {
			best, bestAbove = o, above
		}
	}
	if best == nil {
		return nil
	}
	c := best.idle[0] // bottom of the stack: least recently used
	copy(best.idle, best.idle[1:])
	best.idle[len(best.idle)-1] = nil
	best.idle = best.idle[:len(best.idle)-1]
	return c
}

// dial opens the connection for a slot already reserved for tp and settles
// the reservation: on success the slot becomes an in-use connection, on
// failure it is freed for waiters.
func (m *Manager) dial(ctx context.Context, tp *tenantPool) (*Conn, error) {
	c, err := m.connect(ctx, tp.tenant)
	var doomed *Conn
	m.mu.Lock()
	tp.dialing--
	switch {
	case m.closed:
		doomed, err = c, ErrClosed
	case tp.removed:
		doomed, err = c, ErrUnknownTenant
	}
	if err != nil {
		m.open--
		tp.open--
		grants := m.dispatchLocked()
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
	tp.params = c.Params
	m.mu.Unlock()
	return c, nil
}

// connect dials one backend connection, retrying transient failures with
// backoff for up to backend.resume_timeout (a Serverless v2 cluster resuming
// from zero capacity, a writer failover). Each attempt is bounded by
// backend.connect_timeout; Close ends every dial.
func (m *Manager) connect(ctx context.Context, t *routing.Tenant) (*Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel)
	defer stop()

	start := time.Now()
	backoff := retryBackoffMin
	for attempt := 1; ; attempt++ {
		c, err := m.dialOnce(ctx, t)
		if err == nil {
			return c, nil
		}
		if m.backend.ResumeTimeout <= 0 || ctx.Err() != nil || !retryable(err) {
			return nil, err
		}
		left := m.backend.ResumeTimeout - time.Since(start)
		if left <= 0 {
			return nil, fmt.Errorf("pool: backend unreachable for %s: %w", m.backend.ResumeTimeout, err)
		}
		wait := min(backoff/2+rand.N(backoff/2+1), left) // jitter spreads a crowd of retries
		m.log.Info("backend dial failed, retrying",
			zap.String("tenant", t.Name), zap.Int("attempt", attempt),
			zap.Duration("backoff", wait), zap.Error(err))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, err
		case <-timer.C:
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
}

func (m *Manager) dialOnce(ctx context.Context, t *routing.Tenant) (*Conn, error) {
	if ct := m.backend.ConnectTimeout; ct > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ct)
		defer cancel()
	}
	c, err := m.dialer.Dial(ctx, t)
	if err == nil && c == nil {
		err = errors.New("pool: dialer returned no connection")
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
// last thing it sent and nothing is unread). It is handed to a waiter of its
// tenant, kept idle, or closed when the pool must shrink or another tenant
// needs the budget more.
func (m *Manager) Release(c *Conn) {
	tp := c.tenant
	m.mu.Lock()
	if !c.out {
		m.mu.Unlock()
		m.log.DPanic("connection released twice or not from this pool", zap.String("tenant", tp.name))
		return
	}
	c.lastUsed = m.now()
	full := m.open >= m.limit
	var doomed []*Conn
	var grants []pending
	if m.closed || tp.removed || m.expired(c) || tp.open > tp.tenant.Policy.PoolSize {
		c.out = false
		doomed = append(doomed, m.dropLocked(c))
		grants = m.dispatchLocked()
	} else {
		// When the budget is full, a waiting tenant below its fair share
		// gets this connection's slot; failing that, the tenant's own
		// waiter gets the connection; failing that, any tenant queued for
		// budget gets the slot, since idling here would only block it.
		o := m.starvedLocked(tp, full)
		if o == nil && len(tp.waiters) > 0 {
			grants = append(grants, pending{m.popWaiterLocked(tp), grant{conn: c}})
		} else {
			if o == nil && full {
				o = m.neediestLocked(tp, nil)
			}
			c.out = false
			if o != nil {
				doomed = append(doomed, m.dropLocked(c))
				grants = append(grants, m.grantDialLocked(o))
			} else {
				tp.idle = append(tp.idle, c)
			}
		}
	}
	m.mu.Unlock()
	closeAll(doomed)
	sendAll(grants)
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
	m.dropLocked(c)
	grants := m.dispatchLocked()
	m.mu.Unlock()
	c.close()
	sendAll(grants)
}

func (m *Manager) dropLocked(c *Conn) *Conn {
	m.open--
	c.tenant.open--
	return c
}

type pending struct {
	w *waiter
	g grant
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
	copy(tp.waiters, tp.waiters[1:])
	tp.waiters[len(tp.waiters)-1] = nil
	tp.waiters = tp.waiters[:len(tp.waiters)-1]
	m.waiting--
	return w
}

// grantDialLocked reserves a slot for tp's first waiter, which will dial.
func (m *Manager) grantDialLocked(tp *tenantPool) pending {
	m.open++
	tp.open++
	tp.dialing++
	return pending{m.popWaiterLocked(tp), grant{dial: true}}
}

// dispatchLocked hands free budget to waiting tenants, neediest first (the
// fewest connections relative to pool_size), so that one tenant's queue
// cannot starve another's.
func (m *Manager) dispatchLocked() []pending {
	var out []pending
	for m.waiting > 0 && m.open < m.limit {
		tp := m.neediestLocked(nil, nil)
		if tp == nil {
			break
		}
		out = append(out, m.grantDialLocked(tp))
	}
	return out
}

// neediestLocked returns the tenant other than skip that has a waiter, room
// under its pool_size and (when below is set) fewer connections than below
// says, holding the fewest connections relative to its pool_size; ties go
// round-robin.
func (m *Manager) neediestLocked(skip *tenantPool, below func(*tenantPool) int) *tenantPool {
	if m.waiting == 0 || (skip != nil && m.waiting == len(skip.waiters)) {
		return nil
	}
	n := len(m.order)
	var best *tenantPool
	bestAt := 0
	for i := 0; i < n; i++ {
		at := (m.next + i) % n
		o := m.order[at]
		ps := o.tenant.Policy.PoolSize
		if o == skip || len(o.waiters) == 0 || o.open >= ps || (below != nil && o.open >= below(o)) {
			continue
		}
		// o.open/ps < best.open/best.ps, without division.
		if best == nil || o.open*best.tenant.Policy.PoolSize < best.open*ps {
			best, bestAt = o, at
		}
	}
	if best != nil {
		m.next = (bestAt + 1) % n
	}
	return best
}

// starvedLocked returns a tenant other than tp that is waiting while holding
// less than its fair share of a full budget, provided tp holds more than its
// own. Shares are proportional to pool_size among the tenants that want
// connections (waiting or holding some). A transfer needs the giver strictly
// above its share and the taker strictly below its own, so slots never
// bounce back and forth.
func (m *Manager) starvedLocked(tp *tenantPool, full bool) *tenantPool {
	if !full || m.waiting == len(tp.waiters) {
		return nil
	}
	weight := 0
	for _, o := range m.order {
		if o == tp || len(o.waiters) > 0 || o.open > 0 {
			weight += o.tenant.Policy.PoolSize
		}
	}
	// limit*pool_size/weight, rounded to nearest: flooring would hand the
	// remainder to whoever holds it, which favours large tenants.
	share := func(o *tenantPool) int {
		return max(1, (2*m.limit*o.tenant.Policy.PoolSize+weight)/(2*weight))
	}
	if tp.open <= share(tp) {
		return nil
	}
	return m.neediestLocked(tp, share)
}

func (m *Manager) expired(c *Conn) bool {
	return m.backend.MaxLifetime > 0 && m.now().Sub(c.created) >= m.backend.MaxLifetime
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

// Stats returns a snapshot of every tenant's pool, by tenant name.
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
		}
	}
	return out
}

// Budget returns how many backend connections are counted against the
// global budget (idle, in use and dialing, over all tenants) and the budget
// itself (backend.max_connections).
func (m *Manager) Budget() (open, limit int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.open, m.limit
}

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
// to min_pool_size.
func (m *Manager) maintain() {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.reap()
			m.fill()
		}
	}
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
	m.mu.Unlock()
	closeAll(doomed)
	sendAll(grants)
}

// fill opens connections, one at a time, for tenants below min_pool_size
// while the budget has room. A tenant whose dial fails is skipped until the
// next round; the round ends after as many dials as were missing when it
// began, so connections that do not stay (an immediately expiring
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
		if !m.closed && m.open < m.limit {
			for _, tp := range m.order {
				if !tp.removed && !failed[tp] && tp.open < tp.tenant.Policy.MinPoolSize {
					target = tp
					break
				}
			}
		}
		if target == nil {
			m.mu.Unlock()
			return
		}
		m.open++
		target.open++
		target.dialing++
		m.mu.Unlock()
		c, err := m.dial(context.Background(), target) // Close ends it
		if err != nil {
			if !errors.Is(err, ErrClosed) {
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
