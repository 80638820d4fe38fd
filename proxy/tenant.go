package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/pgbridge/pgbridge/internal/stats"
	"github.com/pgbridge/pgbridge/routing"
)

// tenantState is the router's live state of one configured tenant: its
// current configuration, counters and rate limiters. Sessions keep a
// pointer to it for their whole life; a reload swaps the configuration in
// place so limits change under running sessions.
type tenantState struct {
	name  string
	cur   atomic.Pointer[routing.Tenant]
	stats stats.Tenant

	// queries and logins are token buckets; nil when the rate is 0
	// (unlimited), so the hot path pays one nil check.
	queries atomic.Pointer[rate.Limiter]
	logins  atomic.Pointer[rate.Limiter]

	clients int // connected clients; guarded by Server.mu

	// gate is non-nil while the tenant is paused (admin PAUSE): new
	// transactions wait until it is closed by RESUME.
	gate atomic.Pointer[chan struct{}]

	// paramsOK holds the sets of client startup parameters (session
	// paramsKey) a backend of the tenant has accepted. A set not in it is
	// applied in a round trip of its own before the client's first
	// request goes out (see session.attach). Cleared when it reaches
	// maxParamSets.
	paramsMu sync.Mutex
	paramsOK map[string]struct{}
}

const maxParamSets = 1024

// paramsKnown reports whether a backend of the tenant has accepted the
// parameter set key.
func (ts *tenantState) paramsKnown(key string) bool {
	if key == "" {
		return true // nothing to set: at most RESETs of accepted names
	}
	ts.paramsMu.Lock()
	_, ok := ts.paramsOK[key]
	ts.paramsMu.Unlock()
	return ok
}

// setParamsKnown records whether a backend accepted the parameter set key.
func (ts *tenantState) setParamsKnown(key string, ok bool) {
	ts.paramsMu.Lock()
	defer ts.paramsMu.Unlock()
	if !ok {
		delete(ts.paramsOK, key)
		return
	}
	if ts.paramsOK == nil || len(ts.paramsOK) >= maxParamSets {
		ts.paramsOK = make(map[string]struct{})
	}
	ts.paramsOK[key] = struct{}{}
}

func (ts *tenantState) pause() {
	ch := make(chan struct{})
	ts.gate.CompareAndSwap(nil, &ch)
}

func (ts *tenantState) resume() {
	if ch := ts.gate.Swap(nil); ch != nil {
		close(*ch)
	}
}

func newTenantState(t *routing.Tenant) *tenantState {
	ts := &tenantState{name: t.Name}
	ts.apply(t)
	return ts
}

// apply installs a (new) configuration of the tenant. Limiters keep their
// tokens when only their rate changes.
func (ts *tenantState) apply(t *routing.Tenant) {
	ts.cur.Store(t)
	p := t.Policy
	setLimiter(&ts.queries, p.QueryRate, p.EffectiveQueryBurst())
	setLimiter(&ts.logins, p.ConnectionRate, 0)
}

func setLimiter(dst *atomic.Pointer[rate.Limiter], r float64, burst int) {
	if r <= 0 {
		dst.Store(nil)
		return
	}
	if burst <= 0 {
		burst = routing.DefaultBurst(r)
	}
	if l := dst.Load(); l != nil {
		l.SetLimit(rate.Limit(r))
		l.SetBurst(burst)
		return
	}
	dst.Store(rate.NewLimiter(rate.Limit(r), burst))
}

func (ts *tenantState) tenant() *routing.Tenant { return ts.cur.Load() }

// loginThrottle slows down password guessing: after maxFree failed logins
// for one (client address, user) pair, further attempts from that pair are
// refused without running SCRAM until a back-off (doubling per failure, at
// most maxBackoff) has passed. A successful login clears the pair. The map
// is bounded; when it is full the stalest entry goes.
type loginThrottle struct {
	mu      sync.Mutex
	entries map[string]*loginFailures
	limit   int
}

type loginFailures struct {
	n    int
	last time.Time
	// inflight counts the pair's exchanges under way; done is closed
	// (and replaced) whenever one ends.
	inflight int
	done     chan struct{}
}

const (
	throttleFree       = 5 // failures allowed before back-off starts
	throttleBaseDelay  = time.Second
	throttleMaxBackoff = time.Minute
	throttleForget     = 10 * time.Minute // an entry this old is forgotten
	throttleEntries    = 10000
)

func newLoginThrottle(limit int) *loginThrottle {
	return &loginThrottle{entries: make(map[string]*loginFailures), limit: limit}
}

func throttleKey(addr net.Addr, user string) string {
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host + "\x00" + user
}

// backoff is how long the pair must wait after n failures.
func backoff(n int) time.Duration {
	if n < throttleFree {
		return 0
	}
	shift := min(n-throttleFree, 10)
	return min(throttleBaseDelay<<shift, throttleMaxBackoff)
}

// entryLocked is the pair's entry, nil when it has none or its failures
// are forgotten (and no attempt of it is under way).
func (lt *loginThrottle) entryLocked(key string, now time.Time) *loginFailures {
	e := lt.entries[key]
	if e != nil && now.Sub(e.last) > throttleForget && e.inflight == 0 {
		delete(lt.entries, key)
		return nil
	}
	return e
}

// wait is how long the pair must still wait (0 = go ahead).
func (e *loginFailures) wait(now time.Time) time.Duration {
	if e == nil {
		return 0
	}
	return max(e.last.Add(backoff(e.n)).Sub(now), 0)
}

// check reports how long the pair must still wait (0 = go ahead).
func (lt *loginThrottle) check(key string, now time.Time) time.Duration {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return lt.entryLocked(key, now).wait(now)
}

// begin reserves an attempt for the pair: it returns the back-off still
// to wait (nothing reserved), or 0 once fewer attempts are under way than
// the failures the pair has left before its back-off (one at a time once
// it started). Without this, attempts running at the same time would all
// pass check and the pair would get any number of guesses at once.
// Call end when the attempt is over.
func (lt *loginThrottle) begin(ctx context.Context, key string, now func() time.Time) (time.Duration, error) {
	for {
		lt.mu.Lock()
		t := now()
		e := lt.entryLocked(key, t)
		if e == nil {
			if len(lt.entries) >= lt.limit {
				lt.evictLocked(t)
			}
			e = &loginFailures{}
			lt.entries[key] = e
		}
		if wait := e.wait(t); wait > 0 {
			lt.mu.Unlock()
			return wait, nil
		}
		if e.inflight < max(throttleFree-e.n, 1) {
			e.inflight++
			lt.mu.Unlock()
			return 0, nil
		}
		if e.done == nil {
			e.done = make(chan struct{})
		}
		ch := e.done
		lt.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// end finishes an attempt begin reserved.
func (lt *loginThrottle) end(key string) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	e := lt.entries[key]
	if e == nil {
		return
	}
	e.inflight--
	if e.done != nil {
		close(e.done)
		e.done = nil
	}
	if e.n == 0 && e.inflight <= 0 {
		delete(lt.entries, key)
	}
}

func (lt *loginThrottle) fail(key string, now time.Time) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	e := lt.entries[key]
	if e == nil {
		if len(lt.entries) >= lt.limit {
			lt.evictLocked(now)
		}
		e = &loginFailures{}
		lt.entries[key] = e
	}
	e.n++
	e.last = now
}

// succeed forgets the pair's failures; called under its reservation,
// whose end removes the entry once no attempt is under way.
func (lt *loginThrottle) succeed(key string) {
	lt.mu.Lock()
	if e := lt.entries[key]; e != nil {
		e.n, e.last = 0, time.Time{}
	}
	lt.mu.Unlock()
}

// evictLocked makes room: forgotten entries go first, else the stalest.
func (lt *loginThrottle) evictLocked(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, e := range lt.entries {
		if e.inflight > 0 {
			continue // (its attempts under way end it)
		}
		if now.Sub(e.last) > throttleForget {
			delete(lt.entries, k)
			continue
		}
		if oldest == "" || e.last.Before(oldestAt) {
			oldest, oldestAt = k, e.last
		}
	}
	if len(lt.entries) >= lt.limit && oldest != "" {
		delete(lt.entries, oldest)
	}
}
