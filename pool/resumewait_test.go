package pool

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// A caller queued (pool_size reached) behind a dial that retries a
// resuming cluster waits past pool_wait_timeout while the dial retries.
// Once the cluster is back it waits as any caller would, for up to
// pool_wait_timeout more: it must not get ErrWaitTimeout at the first
// look after the resume when the connection comes free well within that.
func TestQueuedCallerWaitsOnceTheClusterResumed(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cfg := config(10, tenantSpec{name: "acme", poolSize: 1, wait: 400 * time.Millisecond})
	cfg.Backend.ResumeTimeout = 30 * time.Second
	m, d := newManager(t, cfg)
	d.set(func(d *fakeDialer) { d.script = []error{refused, refused, refused, refused, nil} })

	first := make(chan result, 1)
	acquireAsync(context.Background(), m, "acme", first)
	eventually(t, "the first dial", func() bool { return d.count("acme") >= 1 })
	second := make(chan result, 1)
	acquireAsync(context.Background(), m, "acme", second)
	eventually(t, "the second caller queued", waiting(m, "acme", 1))

	r := recv(t, first)
	if r.err != nil {
		t.Fatalf("first Acquire: %v", r.err)
	}
	time.Sleep(200 * time.Millisecond) // its statement runs, well within pool_wait_timeout
	m.Release(r.c)
	r2 := recv(t, second)
	if r2.err != nil {
		t.Fatalf("queued caller after the resume: %v", r2.err)
	}
	m.Release(r2.c)
}
