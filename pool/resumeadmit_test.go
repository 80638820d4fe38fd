package pool

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// Callers that waited out a resuming cluster past pool_wait_timeout (the
// one dialing, one queued behind it) then find the active-transaction
// limit reached. Their wait for admission is an ordinary one, bounded by
// pool_wait_timeout: they must not get ErrAdmitTimeout at once, without
// having waited for admission at all, when a transaction ends well within
// it.
func TestAdmissionAfterResumeWait(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cfg := limited(1, 10,
		tenantSpec{name: "acme", poolSize: 1, wait: 300 * time.Millisecond},
		tenantSpec{name: "b", poolSize: 1})
	cfg.Backend.ResumeTimeout = 30 * time.Second
	m, d := newManager(t, cfg)
	busy := acquire(t, m, "b") // holds the one admission

	d.set(func(d *fakeDialer) { d.script = []error{refused, refused, refused, refused, nil} })
	first, second := make(chan result, 1), make(chan result, 1)
	acquireAsync(context.Background(), m, "acme", first)
	eventually(t, "the first dial", func() bool { return d.count("acme") >= 1 })
	acquireAsync(context.Background(), m, "acme", second)
	eventually(t, "the second caller queued", waiting(m, "acme", 1))

	eventually(t, "the cluster back", func() bool { return d.count("acme") >= 5 })
	time.Sleep(50 * time.Millisecond) // a transaction ends well within pool_wait_timeout
	m.Release(busy)

	r := recv(t, first)
	if r.err != nil {
		t.Fatalf("dialing caller after the resume: %v", r.err)
	}
	m.Release(r.c)
	r2 := recv(t, second)
	if r2.err != nil {
		t.Fatalf("queued caller after the resume: %v", r2.err)
	}
	m.Release(r2.c)
}
