package proxy

import (
	"math"
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
		burst = max(1, int(math.Ceil(r)))
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

// check reports how long the pair must still wait (0 = go ahead).
func (lt *loginThrottle) check(key string, now time.Time) time.Duration {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	e := lt.entries[key]
	if e == nil {
		return 0
	}
	if now.Sub(e.last) > throttleForget {
		delete(lt.entries, key)
		return 0
	}
	if wait := e.last.Add(backoff(e.n)).Sub(now); wait > 0 {
		return wait
	}
	return 0
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

func (lt *loginThrottle) succeed(key string) {
	lt.mu.Lock()
	delete(lt.entries, key)
	lt.mu.Unlock()
}

// evictLocked makes room: forgotten entries go first, else the stalest.
func (lt *loginThrottle) evictLocked(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, e := range lt.entries {
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
