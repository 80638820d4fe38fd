package pool

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

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

// Manager owns every tenant's pool and the backend budget they share.
//
// All state is guarded by one mutex; no I/O happens while it is held. Each
// connection is counted against its tenant's pool_size and the global
// backend.max_connections from the moment its dial is reserved until it is
// closed.
type Manager struct {
	dialer Dialer
	log    *zap.Logger
	now    func() time.Time

	mu      sync.Mutex
	backend routing.Backend
	limit   int // backend.max_connections
	open    int // connections counted against limit (idle, in use, dialing)
	tenants map[string]*tenantPool
	order   []*tenantPool // sorted by name, for round-robin grants
	next    int           // round-robin cursor into order
	closed  bool

	stop chan struct{}
	done chan struct{}
}

type tenantPool struct {
	name    string
	tenant  *routing.Tenant
	idle    []*Conn // stack: the most recently used is reused first
	open    int     // idle + in use + dialing
	waiters []*waiter
	params  map[string]string // ParameterStatus of the latest dial
	removed bool
}

type waiter struct {
	ch chan grant // buffered 1; exactly one grant is ever sent
}

// grant hands a waiter either a ready connection or a reserved slot to dial.
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
		stop:    make(chan struct{}),
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
// tenant's queue for up to its pool_wait_timeout (or until ctx ends).
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
	for len(tp.idle) > 0 {
		c := tp.idle[len(tp.idle)-1]
		tp.idle = tp.idle[:len(tp.idle)-1]
		if m.expired(c) {
			doomed = append(doomed, m.dropLocked(c))
			continue
		}
		m.mu.Unlock()
		closeAll(doomed)
		return c, nil
	}
	if m.reserveLocked(tp, &doomed) {
		m.mu.Unlock()
		closeAll(doomed)
		return m.dial(ctx, tp)
	}
	w := &waiter{ch: make(chan grant, 1)}
	tp.waiters = append(tp.waiters, w)
	wait := tp.tenant.Policy.PoolWaitTimeout
	m.mu.Unlock()
	closeAll(doomed)

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var expired error
	select {
	case g := <-w.ch:
		return m.take(ctx, tp, g)
	case <-timer.C:
		expired = ErrWaitTimeout
	case <-ctx.Done():
		expired = ctx.Err()
	}
	m.mu.Lock()
	if removeWaiter(tp, w) {
		m.mu.Unlock()
		return nil, expired
	}
	m.mu.Unlock()
	// A grant raced with the timeout; it is ours, use it.
	return m.take(ctx, tp, <-w.ch)
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
	return true
}

// idleVictimLocked picks the least recently used idle connection of a tenant
// other than tp, preferring tenants holding the most connections.
func (m *Manager) idleVictimLocked(tp *tenantPool) *Conn {
	var best *tenantPool
	for _, o := range m.order {
		if o == tp || len(o.idle) == 0 {
			continue
		}
		if best == nil || o.open > best.open {
			best = o
		}
	}
	if best == nil {
		return nil
	}
	c := best.idle[0] // bottom of the stack: least recently used
	best.idle = best.idle[1:]
	return c
}

func (m *Manager) dial(ctx context.Context, tp *tenantPool) (*Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, m.backend.ConnectTimeout)
	defer cancel()
	c, err := m.dialer.Dial(dctx, tp.tenant)
	m.mu.Lock()
	if err != nil {
		m.open--
		tp.open--
		grants := m.dispatchLocked()
		m.mu.Unlock()
		sendAll(grants)
		return nil, err
	}
	c.tenant = tp
	c.created = m.now()
	c.lastUsed = c.created
	tp.params = c.Params
	if m.closed || tp.removed {
		m.mu.Unlock()
		m.Discard(c)
		if m.closed {
			return nil, ErrClosed
		}
		return nil, ErrUnknownTenant
	}
	m.mu.Unlock()
	return c, nil
}

// Release gives back a connection that is idle (ReadyForQuery 'I' was the
// last thing it sent and nothing is unread). It is handed to a waiter of its
// tenant, kept idle, or closed when the pool must shrink or another tenant
// needs the budget more.
func (m *Manager) Release(c *Conn) {
	tp := c.tenant
	m.mu.Lock()
	c.lastUsed = m.now()
	var doomed []*Conn
	var grants []pending
	switch {
	case m.closed || tp.removed || m.expired(c) || tp.open > tp.tenant.Policy.PoolSize:
		doomed = append(doomed, m.dropLocked(c))
		grants = m.dispatchLocked()
	case m.open >= m.limit && m.starvedLocked(tp):
		// The budget is full and another tenant below its fair share is
		// waiting: give it this connection's slot.
		doomed = append(doomed, m.dropLocked(c))
		grants = m.dispatchLocked()
	case len(tp.waiters) > 0:
		w := tp.waiters[0]
		tp.waiters = tp.waiters[1:]
		grants = append(grants, pending{w, grant{conn: c}})
	default:
		tp.idle = append(tp.idle, c)
	}
	m.mu.Unlock()
	closeAll(doomed)
	sendAll(grants)
}

// Discard closes a connection whose state is unknown or broken and frees its
// slot for a waiter.
func (m *Manager) Discard(c *Conn) {
	m.mu.Lock()
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

// dispatchLocked hands free budget to waiting tenants round-robin, so that
// one tenant's queue cannot starve another's.
func (m *Manager) dispatchLocked() []pending {
	var out []pending
	for m.open < m.limit {
		tp := m.nextWaitingLocked()
		if tp == nil {
			break
		}
		w := tp.waiters[0]
		tp.waiters = tp.waiters[1:]
		m.open++
		tp.open++
		out = append(out, pending{w, grant{dial: true}})
	}
	return out
}

// nextWaitingLocked returns the next tenant, round-robin, with a waiter and
// room under its pool_size.
func (m *Manager) nextWaitingLocked() *tenantPool {
	n := len(m.order)
	for i := 0; i < n; i++ {
		tp := m.order[(m.next+i)%n]
		if len(tp.waiters) > 0 && tp.open < tp.tenant.Policy.PoolSize {
			m.next = (m.next + i + 1) % n
			return tp
		}
	}
	return nil
}

// starvedLocked reports whether some tenant other than tp is waiting while
// holding less than its fair share of the budget, and tp holds more than its
// own. Shares are proportional to pool_size among the tenants that want
// connections.
func (m *Manager) starvedLocked(tp *tenantPool) bool {
	weight := 0
	for _, o := range m.order {
		if o == tp || len(o.waiters) > 0 || o.open > 0 {
			weight += o.tenant.Policy.PoolSize
		}
	}
	if weight == 0 {
		return false
	}
	share := func(o *tenantPool) int {
		s := m.limit * o.tenant.Policy.PoolSize / weight
		if s < 1 {
			s = 1
		}
		return s
	}
	if tp.open <= share(tp) {
		return false
	}
	for _, o := range m.order {
		if o != tp && len(o.waiters) > 0 && o.open < o.tenant.Policy.PoolSize && o.open < share(o) {
			return true
		}
	}
	return false
}

func removeWaiter(tp *tenantPool, w *waiter) bool {
	for i, x := range tp.waiters {
		if x == w {
			tp.waiters = append(tp.waiters[:i], tp.waiters[i+1:]...)
			return true
		}
	}
	return false
}

func (m *Manager) expired(c *Conn) bool {
	return m.backend.MaxLifetime > 0 && m.now().Sub(c.created) >= m.backend.MaxLifetime
}

// Params returns the ParameterStatus values of the tenant's most recent
// backend connection, or nil if none was dialed yet.
func (m *Manager) Params(tenant string) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tp := m.tenants[tenant]; tp != nil {
		return tp.params
	}
	return nil
}

// Close stops maintenance, closes idle connections and fails waiters. It is
// idempotent. Connections in use are closed when they are released.
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
	m.mu.Unlock()
	close(m.stop)
	closeAll(doomed)
	sendAll(grants)
	<-m.done
}

// maintain closes connections idle past backend.idle_timeout or older than
// max_lifetime, keeping min_pool_size per tenant, and opens connections up
// to min_pool_size.
func (m *Manager) maintain() {
	defer close(m.done)
	interval := time.Second
	if it := m.backend.IdleTimeout / 4; it > 0 && it < interval {
		interval = it
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
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
		for _, c := range tp.idle {
			idleTooLong := m.backend.IdleTimeout > 0 && now.Sub(c.lastUsed) >= m.backend.IdleTimeout
			// The stack's bottom holds the least recently used; close from
			// there but never below min_pool_size.
			aboveMin := tp.open > tp.tenant.Policy.MinPoolSize
			if (idleTooLong && aboveMin) || m.expired(c) {
				doomed = append(doomed, m.dropLocked(c))
				continue
			}
			keep = append(keep, c)
		}
		tp.idle = keep
	}
	grants := m.dispatchLocked()
	m.mu.Unlock()
	closeAll(doomed)
	sendAll(grants)
}

func (m *Manager) fill() {
	for {
		m.mu.Lock()
		var target *tenantPool
		for _, tp := range m.order {
			if !m.closed && !tp.removed && tp.open < tp.tenant.Policy.MinPoolSize && m.open < m.limit {
				target = tp
				break
			}
		}
		if target == nil {
			m.mu.Unlock()
			return
		}
		m.open++
		target.open++
		m.mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-m.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		c, err := m.dial(ctx, target)
		cancel()
		if err != nil {
			m.log.Info("min_pool_size dial failed", zap.String("tenant", target.name), zap.Error(err))
			return
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
