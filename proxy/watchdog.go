package proxy

import (
	"context"
	"errors"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/pgbridge/pgbridge/pool"
)

// The watchdog enforces the guardrails that are about time: statements
// running past max_statement_timeout are cancelled, sessions idle in a
// transaction past idle_in_transaction_timeout or idle past
// client_idle_timeout are closed. One goroutine per server looks at every
// session each tick, so the hot path only stamps times on state changes
// and arms no timers. Enforcement is late by at most one tick.

const (
	minTick = 5 * time.Millisecond
	maxTick = 250 * time.Millisecond
)

// tick is the watchdog period: a twentieth of the shortest configured
// timeout, within [minTick, maxTick].
func (s *Server) tick() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := maxTick
	for _, ts := range s.tenants {
		p := ts.tenant().Policy
		for _, v := range []time.Duration{p.MaxStatementTimeout, p.IdleInTransactionTimeout, p.ClientIdleTimeout} {
			if v > 0 {
				d = min(d, v/20)
			}
		}
	}
	return max(d, minTick)
}

func (s *Server) watchdog() {
	defer close(s.wdDone)
	period := s.tick()
	t := time.NewTicker(period)
	defer t.Stop()
	var list []*session
	for {
		select {
		case <-s.wdStop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		list = list[:0]
		for ss := range s.sessions {
			list = append(list, ss)
		}
		s.mu.Unlock()
		now := s.now()
		parked := 0
		for i, ss := range list {
			if ss.watch(now) {
				parked++
			}
			list[i] = nil
		}
		s.returnMemory(parked, now)
		if p := s.tick(); p != period { // a reload changed the timeouts
			period = p
			t.Reset(p)
		}
	}
}

// stopWatchdog stops the watchdog and waits for it; safe to call more than
// once, and when it never started.
func (s *Server) stopWatchdog() {
	s.mu.Lock()
	select {
	case <-s.wdStop:
	default:
		close(s.wdStop)
	}
	s.mu.Unlock()
	s.wdOnce.Do(func() { close(s.wdDone) }) // never started: nothing to wait for
	<-s.wdDone
}

// returnMemory gives the memory freed by parking many sessions back to the
// operating system at once, and lets the collector shrink their stacks,
// rather than whenever the background scavenger gets to it: a router that
// took a storm of logins and then holds thousands of idle clients should
// not keep the storm's memory. It runs when a burst of parking (at least
// parkBurst sessions) has ended, at most every returnMemoryEvery.
func (s *Server) returnMemory(parkedNow int, now time.Time) {
	s.parkedSince += parkedNow
	if parkedNow > 0 || s.parkedSince < parkBurst || now.Sub(s.lastReturn) < returnMemoryEvery {
		return
	}
	s.parkedSince = 0
	s.lastReturn = now
	debug.FreeOSMemory()
}

const (
	parkBurst         = 256
	returnMemoryEvery = 5 * time.Second
)

// watch applies the time limits to one session. It reports whether it
// asked the session to park.
func (ss *session) watch(now time.Time) (parking bool) {
	pol := ss.ts.tenant().Policy
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closing || ss.guardFired || ss.idleSince.IsZero() { // zero: still logging in
		return false
	}
	busy := ss.be != nil && (ss.pending > 0 || !ss.boundary)
	if busy && ss.clientsTurnLocked() {
		// In the middle of a request (no Sync yet) with every statement
		// sent answered, or in a COPY that waits for its data, the client
		// thinks: it is idle in a transaction, the request's implicit one
		// if no block is open, holding its backend and whatever locks the
		// statements took. PostgreSQL's own idle timeouts do not see it
		// (no ReadyForQuery was sent). Its start is when the watchdog
		// first saw it (late by at most a tick), and it ends with the
		// client's next batch. The request stays under
		// max_statement_timeout too (below).
		if ss.turnSince.IsZero() || ss.turnMark != ss.sent {
			ss.turnSince, ss.turnMark = now, ss.sent
		}
		if lim := pol.IdleInTransactionTimeout; lim > 0 && now.Sub(ss.turnSince) >= lim {
			ss.fireLocked(errIdleInTransaction(lim))
			return false
		}
		if now.Sub(ss.turnSince) >= admitIdleAfter {
			ss.srv.pool.Idle(ss.be)
		}
	} else {
		ss.turnSince = time.Time{}
	}
	switch {
	case busy:
		lim := pol.MaxStatementTimeout
		switch age := now.Sub(ss.busySince); {
		case lim <= 0:
		case ss.routerCancel == 0 && age >= lim:
			ss.routerCancel = lim
			ss.progressReads, ss.progressAt = ss.beReads.Load(), now
			ss.ts.stats.Cancels.Inc(string(ReasonStatementTimeout))
			go ss.cancelStatement(ss.be, ss.busySince)
		case ss.routerCancel != 0 && age >= lim+max(lim, cancelFinish):
			// Still going long after the cancel, however much it sends: a
			// statement that catches the cancel and keeps sending notices
			// (or rows) must not escape the limit either.
			ss.fireLocked(errStatementStuck(lim))
		case ss.routerCancel != 0:
			if r := ss.beReads.Load(); r != ss.progressReads || !ss.wmu.TryLock() {
				// The backend is still sending, or the answer waits on
				// the client to take it (a slow client is woken only
				// once much of its socket buffer has drained, seconds
				// apart; one that stopped reading meets the cap above).
				ss.progressReads, ss.progressAt = r, now
				break
			}
			ss.wmu.Unlock()
			if now.Sub(ss.progressAt) >= cancelGrace {
				// Nothing came back since the cancel: the statement caught
				// it (an exception handler), or nothing runs and the
				// client holds its backend without a Sync. End the
				// session; its backend is discarded with whatever it was
				// doing.
				ss.fireLocked(errStatementStuck(lim))
			}
		}
	case ss.txStatus == 'T' || ss.txStatus == 'E':
		// (Not while a statement the client sent waits for a query_rate
		// token: the client is not idle, the router holds it back.)
		if lim := pol.IdleInTransactionTimeout; lim > 0 && !ss.waiting && now.Sub(ss.idleSince) >= lim {
			ss.fireLocked(errIdleInTransaction(lim))
			return false
		}
		if ss.be != nil && now.Sub(ss.idleSince) >= admitIdleAfter {
			// Its client has been thinking inside the transaction: it
			// stops counting against max_active_transactions until its
			// next request (a no-op when it does not count).
			ss.srv.pool.Idle(ss.be)
		}
	default:
		if ss.copyEnded && ss.inFill && ss.be != nil && ss.pumpDone != nil && ss.pending == 0 &&
			ss.txStatus == 'I' && ss.tracking && ss.pinned == "" {
			// A COPY failed on its data and the client went quiet: the
			// client loop waits for the client, so nothing is being
			// written to the backend; give it back.
			// (pumpDone stays: the pump may not have written the COPY's
			// error yet, and the client's next request waits for it.)
			be, done := ss.be, ss.pumpDone
			ss.be, ss.copyEnded = nil, false
			go ss.giveBackIdle(be, done)
		}
		if lim := pol.ClientIdleTimeout; lim > 0 && !ss.waiting && !ss.requesting && now.Sub(ss.idleSince) >= lim {
			// (A session waiting for a backend or admission is not idle;
			// the wait ends by pool_wait_timeout. Nor is one whose
			// request the router is readying a backend for, once such a
			// wait ended: requesting.)
			ss.fireLocked(errClientIdle(lim))
			return
		}
		if ss.inFill && ss.be == nil && !ss.parkReq && !ss.tls && now.Sub(ss.idleSince) >= parkAfter && ss.idleSince.After(ss.parkedAt) {
			// Idle between transactions: wake the client loop so it
			// waits without a read buffer (see session.park).
			ss.parkReq, ss.parkedAt = true, now
			_ = ss.nc.SetReadDeadline(time.Unix(1, 0))
			return true
		}
	}
	return false
}

// clientsTurnLocked reports whether a session in the middle of a request
// waits for its client, which the client loop does (and no answer is
// still being written to a client slow to read it): a COPY from the
// client runs and the client has not ended it, or no Sync is unanswered and the backend has finished every
// Execute sent, the last message written (Flush aside) being one of them,
// or has skipped the rest after an error. (A Parse, Bind or Describe
// written after the last Execute may still wait on a lock: that is not
// the client's turn.)
func (ss *session) clientsTurnLocked() bool {
	switch {
	case !ss.inFill:
		return false
	case !ss.wmu.TryLock():
		return false // an answer is still being written to the client
	}
	ss.wmu.Unlock()
	switch {
	case ss.inCopy:
		return !ss.copyDone
	case ss.pending > 0 || ss.boundary:
		return false
	}
	done := int(ss.execsDone.Load())
	return done >= execsSettled || ss.endsExec && done >= ss.tailExecs
}

// cancelGrace is how long a request may go on after the router cancelled
// it for max_statement_timeout before the session is ended.
const cancelGrace = 2 * time.Second

// cancelFinish is the least time a request gets to finish after the router
// cancelled it for max_statement_timeout, progress or not (max_statement_
// timeout itself if longer): time for a client to take an answer that was
// already on its way.
const cancelFinish = 5 * time.Second

// parkAfter is how long a session must be idle before it gives its read
// buffer back.
const parkAfter = time.Second

// admitIdleAfter is how long a client must have been idle inside a
// transaction before the transaction stops counting against
// backend.max_active_transactions (pool.Manager.Idle); the watchdog notices
// up to a tick later. Shorter gaps, such as a driver's BEGIN sent as its
// own round trip or a quick application step between statements, keep the
// admission, so that the limit does bound the transactions running at once.
const admitIdleAfter = 100 * time.Millisecond

// pinnedAdmitWait bounds how long a pinned session's transaction waits for
// admission under max_active_transactions before it runs counted above
// the limit (pool.Readmit): long enough that a tenant pinning every
// session gains little by it, short enough that a pinned session holding
// a lock others wait on delays them by no more.
const pinnedAdmitWait = 100 * time.Millisecond

// errGuardEnded is what the client loop returns when it found the session
// ended by a time limit (endGuard) before it wrote the client's request.
var errGuardEnded = errors.New("session ended by a time limit")

// errBackendLost ends a session whose pinned backend broke while its next
// transaction waited for admission.
var errBackendLost = errors.New("backend connection lost")

// cancelStatement sends a cancel request for the request that started at
// since, if it is still running on be.
func (ss *session) cancelStatement(be *pool.Conn, since time.Time) {
	ss.mu.Lock()
	if ss.be != be || !ss.busySince.Equal(since) || ss.routerCancel == 0 {
		ss.mu.Unlock()
		return
	}
	unhold, ok := be.HoldForCancel() // as cancelRunning
	limit := ss.routerCancel
	ss.mu.Unlock()
	if !ok {
		return
	}
	defer unhold()
	ss.srv.hook(hookCancelSend)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := be.Cancel(ctx); err != nil {
		ss.log.Info("statement cancel failed", zap.Error(err))
		return
	}
	ss.log.Info("statement cancelled", zap.String("reason", string(ReasonStatementTimeout)), zap.Duration("max_statement_timeout", limit))
}

// fireLocked ends the session for a time limit, with mu held: from here
// on the client loop writes nothing more to the backend (attach), and the
// session ends once, on its own goroutine (endGuard).
func (ss *session) fireLocked(err *clientError) {
	ss.guardFired, ss.guardErr = true, err
	go ss.endGuard()
}

// endGuard ends the session for the limit fireLocked recorded, once, and
// returns when it is ended: the client loop that finds the limit fired
// waits for it, so that what it read from the client (a COMMIT, say) never
// runs on a backend the session is losing, behind an error that says the
// session ended.
func (ss *session) endGuard() {
	ss.guardOnce.Do(func() { ss.end(ss.guardErr) })
}

// end closes the session for a guardrail: counted, logged, reported.
func (ss *session) end(err *clientError) {
	ss.srv.hook(hookGuardEnd)
	ss.ts.stats.SessionCloses.Inc(string(err.reason))
	ss.kill(err)
}
