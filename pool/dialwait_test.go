package pool

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// waitExtended waits until the first caller queued for tenant waits past
// its pool_wait_timeout (await marked the wait extended). A result on res
// instead, the queued caller's wait having ended first, fails the test.
func waitExtended(t *testing.T, m *Manager, tenant string, res <-chan result) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case r := <-res:
			if r.c != nil {
				m.Release(r.c)
			}
			t.Fatalf("the queued caller's wait ended while the dial was in flight: %v, %v", r.c, r.err)
		default:
		}
		m.mu.Lock()
		tp := m.tenants[tenant]
		extended := tp != nil && len(tp.waiters) > 0 && tp.waiters[0].extended
		m.mu.Unlock()
		if extended {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the queued caller to wait past pool_wait_timeout")
		}
		time.Sleep(time.Millisecond)
	}
}

// slowFirstDial starts a caller of tenant whose dial is held (a resuming
// cluster holding the handshake) until open is called, and returns once the
// dial is counted. Should the test fail first, cleanup opens the dial and
// releases what the caller got, so that the pool closes clean.
func slowFirstDial(t *testing.T, m *Manager, d *fakeDialer, tenant string) (first chan result, open func()) {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	open = func() { once.Do(func() { close(gate) }) }
	d.set(func(d *fakeDialer) { d.gate = gate })
	first = make(chan result, 1)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		open()
		select {
		case r := <-first:
			if r.c != nil {
				m.Release(r.c)
			}
		case <-time.After(5 * time.Second):
		}
	})
	acquireAsync(context.Background(), m, tenant, first)
	eventually(t, "the first dial", func() bool { return m.Stats()[tenant].Dialing == 1 })
	return first, open
}

// A resuming cluster that holds the handshake makes the first dial attempt
// itself slow (up to connect_timeout), not failed. A caller queued behind
// that dial (pool_size reached) whose pool_wait_timeout ends meanwhile
// waits with it, as behind a retrying dial: nothing is busy, the cluster is
// late. Once the dial got through it waits for the connection to come free
// as any caller would.
func TestQueuedCallerWaitsOutSlowFirstDial(t *testing.T) {
	cfg := config(10, tenantSpec{name: "acme", poolSize: 1, wait: time.Second})
	cfg.Backend.ResumeTimeout = 30 * time.Second
	cfg.Backend.ConnectTimeout = 30 * time.Second // slow, not timed out
	m, d := newManager(t, cfg)
	first, open := slowFirstDial(t, m, d, "acme")
	second := make(chan result, 1)
	acquireAsync(context.Background(), m, "acme", second)
	waitExtended(t, m, "acme", second)

	open() // the cluster answers
	r := recv(t, first)
	if r.err != nil {
		t.Fatalf("dialing caller: %v", r.err)
	}
	m.Release(r.c)
	r2 := recv(t, second)
	if r2.err != nil || r2.c != r.c {
		t.Fatalf("queued caller got %v, %v; want the released connection", r2.c, r2.err)
	}
	m.Release(r2.c)
	if n := d.count("acme"); n != 1 {
		t.Fatalf("dials = %d, want 1", n)
	}
}

// The same slow first attempt failing for good (a wrong password, not a
// cluster still resuming): the caller queued behind it gets the dial's
// error at once, as behind a retrying dial that gives up, rather than the
// slot and a dial (and a resume_timeout of waiting) of its own.
func TestQueuedCallerGetsSlowFirstDialsError(t *testing.T) {
	badPassword := &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"}
	cfg := config(10, tenantSpec{name: "acme", poolSize: 1, wait: 100 * time.Millisecond})
	cfg.Backend.ResumeTimeout = 30 * time.Second
	cfg.Backend.ConnectTimeout = 30 * time.Second
	m, d := newManager(t, cfg)
	d.set(func(d *fakeDialer) { d.script = []error{badPassword} })
	first, open := slowFirstDial(t, m, d, "acme")
	second := make(chan result, 1)
	acquireAsync(context.Background(), m, "acme", second)
	waitExtended(t, m, "acme", second)

	open()
	if r := recv(t, first); !errors.Is(r.err, badPassword) {
		t.Fatalf("dialing caller: %v, %v; want the dial's error", r.c, r.err)
	}
	// recv gives up after 5 s, far below resume_timeout.
	if r := recv(t, second); !errors.Is(r.err, badPassword) || r.c != nil {
		if r.c != nil {
			m.Release(r.c)
		}
		t.Fatalf("queued caller: %v, %v; want the dial's error", r.c, r.err)
	}
	if n := d.count("acme"); n != 1 {
		t.Fatalf("dials = %d, want 1", n)
	}
	wantStats(t, m, "acme", TenantStats{})
}

// A caller whose wait ran past pool_wait_timeout while the cluster resumed
// is handed a connection that then fails validation (Suspect came
// meanwhile). Acquire goes on to the next connection with a fresh
// pool_wait_timeout, as it does within an ordinary wait, instead of
// timing out for a deadline that passed while the cluster was late.
func TestValidationFailureAfterResumeWaitTriesNext(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cfg := config(10, tenantSpec{name: "acme", poolSize: 1, wait: time.Second})
	cfg.Backend.ResumeTimeout = 30 * time.Second
	m, d := newManager(t, cfg)
	d.set(func(d *fakeDialer) { d.fail = refused })

	first, second := make(chan result, 1), make(chan result, 1)
	acquireAsync(context.Background(), m, "acme", first)
	eventually(t, "the first dial", func() bool { return d.count("acme") >= 1 })
	acquireAsync(context.Background(), m, "acme", second)
	waitExtended(t, m, "acme", second)

	d.set(func(d *fakeDialer) { d.fail = nil }) // the cluster is back
	r := recv(t, first)
	if r.err != nil {
		t.Fatalf("dialing caller: %v", r.err)
	}
	m.Suspect() // fake backends cannot answer the validation
	m.Release(r.c)
	r2 := recv(t, second)
	if r2.err != nil {
		t.Fatalf("queued caller: %v", r2.err)
	}
	if r2.c == r.c || !isClosed(r.c) {
		t.Fatal("the connection that failed validation was handed out")
	}
	m.Release(r2.c)
}

// What a dial in flight does not extend: a wait while a connection of the
// tenant is busy (the dial is not why it waits), and any wait when
// resume_timeout is 0 (no waiting for a late cluster). Both end with
// ErrWaitTimeout at pool_wait_timeout while the dial is still in flight.
func TestDialInFlightDoesNotExtendWait(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		busy   bool
		resume time.Duration
	}{
		{name: "a connection busy", size: 2, busy: true, resume: 30 * time.Second},
		{name: "resume_timeout 0", size: 1, resume: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(10, tenantSpec{name: "acme", poolSize: tt.size, wait: 100 * time.Millisecond})
			cfg.Backend.ResumeTimeout = tt.resume
			cfg.Backend.ConnectTimeout = 30 * time.Second
			m, d := newManager(t, cfg)
			if tt.busy {
				defer m.Release(acquire(t, m, "acme"))
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // a caller still queued when the test fails leaves
			dialing, open := slowFirstDial(t, m, d, "acme")
			queued := make(chan result, 1)
			acquireAsync(ctx, m, "acme", queued)
			r := recv(t, queued) // within 5 s; the dial stays held until then
			if !errors.Is(r.err, ErrWaitTimeout) || r.c != nil {
				t.Errorf("queued caller: %v, %v; want ErrWaitTimeout", r.c, r.err)
			}
			if r.c != nil {
				m.Release(r.c)
			}
			open()
			if r := recv(t, dialing); r.err != nil {
				t.Errorf("dialing caller: %v", r.err)
			} else {
				m.Release(r.c)
			}
		})
	}
}
