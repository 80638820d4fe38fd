package pool

import (
	"context"
	"time"

	"github.com/pgbridge/pgbridge/routing"
)

// The active-transaction limit (backend.max_active_transactions).
//
// The connection budget bounds how many backends each tenant may hold; it
// does not bound how many of them run at once. A cluster has a few CPUs,
// and every transaction running on it shares them: one tenant running
// twenty transactions at full speed puts twenty runnable backends in front
// of a quiet tenant's query. The limit is admission control for
// transaction-mode acquisitions: each one is admitted (counted as active)
// before it looks for a connection, and leaves with the connection.
// Admission is work-conserving (a tenant alone may use the whole limit);
// at the limit, each transaction that ends admits one from the waiting
// tenant with the fewest active, the longest waiting first among equals. A tenant that sends one query now and
// then therefore waits at most for the next transaction to end, however
// many transactions a busy tenant queues.
//
// Session-mode tenants are not counted, and a session that pins its
// backend (session state in transaction mode) stops counting (Pinned):
// either holds its connection between transactions, and counting that
// would let idle clients block every tenant. A transaction counts until it
// ends: nothing running is ever held back, so a transaction that holds
// locks cannot wait behind the transactions waiting for them.
//
// State lives in Manager and tenantPool under Manager.mu:
//   - active == sum of tenant active over live and retired pools: the
//     connections handed out with admitted set, plus admissions not yet
//     turned into a connection;
//   - admitWaiting == sum of len(admitWaiters) over live tenants, and is 0
//     unless the limit is reached (active >= maxActive > 0).

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

// leaveLocked ends one admission of tp and admits waiters in its place.
func (m *Manager) leaveLocked(tp *tenantPool) []pending {
	m.active--
	tp.active--
	return m.dispatchAdmitsLocked(nil)
}

// dispatchAdmitsLocked admits waiters while the limit allows: the tenant
// with the fewest active first, then the longest waiting; the grants are
// appended to grants.
func (m *Manager) dispatchAdmitsLocked(grants []pending) []pending {
	for m.admitWaiting > 0 && (m.maxActive == 0 || m.active < m.maxActive) {
		var to *tenantPool
		for _, tp := range m.order {
			if len(tp.admitWaiters) == 0 {
				continue
			}
			if to == nil || tp.active < to.active ||
				tp.active == to.active && tp.admitWaiters[0].seq < to.admitWaiters[0].seq {
				to = tp
			}
		}
		w := to.admitWaiters[0]
		to.admitWaiters = removeWaiter(to.admitWaiters, 0)
		m.admitWaiting--
		m.active++
		to.active++
		grants = append(grants, pending{w, grant{admit: true}})
	}
	return grants
}

// failAdmitWaitersLocked ends tp's admission waits with err.
func (m *Manager) failAdmitWaitersLocked(tp *tenantPool, err error, grants []pending) []pending {
	for _, w := range tp.admitWaiters {
		grants = append(grants, pending{w, grant{err: err}})
	}
	m.admitWaiting -= len(tp.admitWaiters)
	tp.admitWaiters = nil
	return grants
}

// leave ends the admission of an Acquire that then failed.
func (m *Manager) leave(tp *tenantPool) {
	m.mu.Lock()
	grants := m.leaveLocked(tp)
	m.mu.Unlock()
	sendAll(grants)
}

// Pinned tells the pool that the caller keeps c past the end of its
// transaction (a pinned session): c stops counting as active, so that an
// idle pinned client does not hold back every other transaction.
func (m *Manager) Pinned(c *Conn) {
	m.mu.Lock()
	var grants []pending
	if c.admitted {
		c.admitted = false
		grants = m.leaveLocked(c.tenant)
	}
	m.mu.Unlock()
	sendAll(grants)
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
