package pool

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/pgbridge/pgbridge/routing"
)

// The active-transaction limit (backend.max_active_transactions).
//
// The connection budget bounds how many backends each tenant may hold; it
// does not bound how many of them run at once. A cluster has a few CPUs,
// and every statement running on it shares them: one tenant running
// twenty transactions at full speed puts twenty runnable backends in front
// of a quiet tenant's query. The limit is admission control: a
// transaction-mode Acquire, which starts a transaction, is admitted
// (counted as active) once it holds its connection (admit), so that one
// waiting for a connection of its own tenant holds no admission another
// tenant could use. Admission is work-conserving (a tenant alone may use
// the whole limit); at the limit, each transaction that stops counting
// admits one from the waiting tenant with the fewest active, the longest
// waiting first among equals. A tenant that sends one query now and then
// therefore waits at most for the next transaction to end or pause,
// however many a busy tenant queues.
//
// A transaction counts from admission until it ends, except while its
// client thinks: the caller reports a client idle inside a transaction
// for a while (the proxy: 100 ms) with Idle, and the transaction stops
// counting; its next request counts again without waiting (Busy). A
// transaction in progress may hold locks that admitted ones wait for, so
// it is never held back, and the count may then exceed the limit, by at
// most the transactions that had paused. Quick gaps (a driver's BEGIN in
// its own round trip) are not reported, or every transaction would pause
// right after BEGIN and the limit would bound nothing.
//
// Session-mode tenants are not counted, nor a login's Probe. A session
// that pins its backend (session state in transaction mode) holds it
// between transactions: each of its transactions counts while it runs,
// the caller ends the count at the transaction's end (Pinned), and the
// next one is admitted on the connection the session kept (Readmit). That
// wait is short (the caller's bound), after which the transaction runs
// counted above the limit: a pinned session may hold session-level locks
// (advisory locks) that admitted transactions wait on, and an unlock made
// to wait for them would deadlock until pool_wait_timeout. Pinning is
// therefore no way around the limit, only a way to exceed it after a wait
// at every transaction.
//
// State lives in Manager and tenantPool under Manager.mu:
//   - active == sum of tenant active over live and retired pools: the
//     connections handed out in state admitRunning, plus admissions
//     granted to an Acquire not yet back from its wait;
//   - admitWaiting == sum of len(admitWaiters) over live tenants, and is 0
//     unless the limit is reached (active >= maxActive > 0);
//   - admitQueue holds each tenant with admission waiters once, and no
//     other: dispatch looks at the waiting tenants only, not at every
//     tenant of a large fleet.

// admitState is a connection's part in the limit.
type admitState uint8

const (
	admitNone    admitState = iota // not admitted: no limit, session mode, Probe, pinned between transactions
	admitRunning                   // admitted and counted in active
	admitIdle                      // admitted, its client's turn: not counted
)

// limitedLocked reports whether an acquisition of tp must be admitted.
func (m *Manager) limitedLocked(tp *tenantPool) bool {
	return m.maxActive > 0 && tp.tenant.Policy.PoolMode == routing.PoolTransaction
}

// admitLocked admits one transaction of tp if the limit allows.
func (m *Manager) admitLocked(tp *tenantPool) bool {
	if m.active >= m.maxActive {
		return false
	}
	m.active++
	tp.active++
	return true
}

// leaveLocked ends one admission of tp and admits the waiter that should
// run in its place, if any: its grant is returned (w nil if none), kept out
// of a slice so that the common case allocates nothing. One freed slot
// admits at most one waiter; a raised limit admits the others at reload
// (dispatchAdmitsLocked).
func (m *Manager) leaveLocked(tp *tenantPool) pending {
	m.active--
	tp.active--
	if m.admitWaiting == 0 || m.maxActive > 0 && m.active >= m.maxActive {
		return pending{}
	}
	return m.admitNextLocked()
}

// dispatchAdmitsLocked admits waiters while the limit allows; the grants
// are appended to grants.
func (m *Manager) dispatchAdmitsLocked(grants []pending) []pending {
	for m.admitWaiting > 0 && (m.maxActive == 0 || m.active < m.maxActive) {
		grants = append(grants, m.admitNextLocked())
	}
	return grants
}

// admitNextLocked admits the next waiter, which must exist: that of the
// tenant with the fewest active, the longest waiting among equals.
func (m *Manager) admitNextLocked() pending {
	var to *tenantPool
	for _, tp := range m.admitQueue {
		if to == nil || tp.active < to.active ||
			tp.active == to.active && tp.admitWaiters[0].seq < to.admitWaiters[0].seq {
			to = tp
		}
	}
	w := to.admitWaiters[0]
	to.admitWaiters = removeWaiter(to.admitWaiters, 0)
	m.admitWaiting--
	if len(to.admitWaiters) == 0 {
		m.unqueueAdmitLocked(to)
	}
	m.active++
	to.active++
	return pending{w, grant{admit: true}}
}

// failAdmitWaitersLocked ends tp's admission waits with err.
func (m *Manager) failAdmitWaitersLocked(tp *tenantPool, err error, grants []pending) []pending {
	for _, w := range tp.admitWaiters {
		grants = append(grants, pending{w, grant{err: err}})
	}
	if len(tp.admitWaiters) > 0 {
		m.unqueueAdmitLocked(tp)
	}
	m.admitWaiting -= len(tp.admitWaiters)
	tp.admitWaiters = nil
	return grants
}

// unqueueAdmitLocked takes tp, which has no admission waiters left, off
// admitQueue.
func (m *Manager) unqueueAdmitLocked(tp *tenantPool) {
	if i := slices.Index(m.admitQueue, tp); i >= 0 {
		last := len(m.admitQueue) - 1
		m.admitQueue[i] = m.admitQueue[last]
		m.admitQueue[last] = nil
		m.admitQueue = m.admitQueue[:last]
	}
}

// leave ends an admission granted to an Acquire that had already left.
func (m *Manager) leave(tp *tenantPool) {
	m.mu.Lock()
	admit := m.leaveLocked(tp)
	m.mu.Unlock()
	admit.send()
}

// admit admits the transaction about to run on c, which the caller holds,
// if c's tenant is limited, waiting until deadline (set here if zero) when
// the limit is reached. The connection comes first: an Acquire waiting for
// one of its tenant's connections holds no admission that other tenants,
// with connections free, could use.
func (m *Manager) admit(ctx context.Context, c *Conn, deadline *time.Time) error {
	tp := c.tenant
	m.mu.Lock()
	if !m.limitedLocked(tp) {
		m.mu.Unlock()
		return nil
	}
	if tp.removed {
		m.mu.Unlock()
		return ErrTenantRemoved
	}
	if !m.admitLocked(tp) {
		if err := m.waitAdmission(ctx, tp, deadline); err != nil { // unlocks mu
			return err
		}
		m.mu.Lock()
	}
	c.admit = admitRunning
	m.mu.Unlock()
	return nil
}

// Pinned tells the pool that the transaction on c is over while the caller
// keeps c for its next one (a pinned session): c stops counting as active,
// so that an idle pinned client holds back no other transaction. The next
// transaction calls Readmit.
func (m *Manager) Pinned(c *Conn) {
	if c.admit != admitNone {
		m.setAdmit(c, admitNone)
	}
}

// Readmit admits the transaction about to start on c, which its caller
// kept since its last one (Pinned). At the limit it waits up to wait (the
// tenant's pool_wait_timeout if that is shorter) for admission like any
// other transaction, then counts the transaction all the same, above the
// limit (see the comment at the top). It fails only when ctx ends, or the
// tenant is removed or the pool closed meanwhile. The caller may lose c to
// Discard during the wait (its backend broke), never to Release; a
// discarded c is not counted.
func (m *Manager) Readmit(ctx context.Context, c *Conn, wait time.Duration) error {
	tp := c.tenant
	m.mu.Lock()
	if c.admit != admitNone || !c.out || !m.limitedLocked(tp) || tp.removed {
		m.mu.Unlock()
		return nil
	}
	if m.admitLocked(tp) {
		c.admit = admitRunning
		m.mu.Unlock()
		return nil
	}
	if pw := tp.tenant.Policy.PoolWaitTimeout; pw > 0 && pw < wait {
		wait = pw
	}
	deadline := time.Now().Add(wait)
	err := m.waitAdmission(ctx, tp, &deadline) // unlocks mu
	m.mu.Lock()
	var leave pending
	switch {
	case err == nil && c.out:
		c.admit = admitRunning
	case err == nil:
		leave = m.leaveLocked(tp) // discarded meanwhile: the grant goes on
	case errors.Is(err, ErrAdmitTimeout):
		err = nil
		if c.out {
			m.setAdmitLocked(c, admitRunning) // above the limit
		}
	}
	m.mu.Unlock()
	leave.send()
	return err
}

// Idle tells the pool that c's client has been idle inside its open
// transaction for a while (every request answered): c stops counting as
// active until Busy, and a waiting transaction may be admitted in its
// place. Call it only after a real pause, not at every ReadyForQuery
// inside a transaction, or the limit would bound nothing.
func (m *Manager) Idle(c *Conn) {
	if c.admit == admitRunning {
		m.setAdmit(c, admitIdle)
	}
}

// Busy tells the pool that the client of c's open transaction sent another
// request: c counts as active again, at once, even above the limit.
func (m *Manager) Busy(c *Conn) {
	if c.admit == admitIdle {
		m.setAdmit(c, admitRunning)
	}
}

// setAdmit is setAdmitLocked, sending the grants it makes.
func (m *Manager) setAdmit(c *Conn, to admitState) {
	m.mu.Lock()
	admit := m.setAdmitLocked(c, to)
	m.mu.Unlock()
	admit.send()
}

// setAdmitLocked moves c to state to and keeps the counts: leaving
// admitRunning ends its count and returns the grant of the waiter admitted
// in its place, if any; entering it counts again at once.
func (m *Manager) setAdmitLocked(c *Conn, to admitState) pending {
	from := c.admit
	c.admit = to
	switch {
	case from == admitRunning && to != admitRunning:
		return m.leaveLocked(c.tenant)
	case from != admitRunning && to == admitRunning:
		m.active++
		c.tenant.active++
	}
	return pending{}
}

// removeWaiter deletes ws[i], keeping the order, and clears the freed cell.
func removeWaiter(ws []*waiter, i int) []*waiter {
	copy(ws[i:], ws[i+1:])
	ws[len(ws)-1] = nil
	return ws[:len(ws)-1]
}

// waitAdmission queues a transaction of tp for admission, with mu held;
// it returns with mu unlocked, nil once admitted.
func (m *Manager) waitAdmission(ctx context.Context, tp *tenantPool, deadline *time.Time) error {
	m.seq++
	w := waiters.Get().(*waiter)
	w.seq = m.seq
	if len(tp.admitWaiters) == 0 {
		m.admitQueue = append(m.admitQueue, tp)
	}
	tp.admitWaiters = append(tp.admitWaiters, w)
	m.admitWaiting++
	if wait := tp.tenant.Policy.PoolWaitTimeout; wait > 0 && deadline.IsZero() {
		*deadline = time.Now().Add(wait)
	}
	m.mu.Unlock()
	g, err := m.await(ctx, tp, w, *deadline, ErrAdmitTimeout)
	if err != nil {
		return err
	}
	return g.err
}
