package pool

import (
	"context"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A burst of callers on a cluster that never comes back: each should get
// its error within about backend.resume_timeout (08006), not wait behind
// one resume_timeout of retries per pair of dials.
func TestBurstOnDeadClusterEndsWithinResumeTimeout(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	const resume = 400 * time.Millisecond
	cfg := config(40, tenantSpec{name: "acme", poolSize: 20, wait: 50 * time.Millisecond})
	cfg.Backend.ResumeTimeout = resume
	m, d := newManager(t, cfg)
	d.set(func(d *fakeDialer) { d.fail = refused })

	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			c, err := m.Acquire(context.Background(), "acme")
			el := time.Since(t0)
			if err == nil {
				m.Release(c)
				t.Errorf("Acquire succeeded on a dead cluster")
			}
			mu.Lock()
			worst = max(worst, el)
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("worst %s, dials %d", worst, d.count("acme"))
	// Without the fix each pair of dials took a resume_timeout of its own
	// (16 callers: 8 rounds); the bound leaves room for a loaded machine.
	if worst > 4*resume {
		t.Errorf("a caller waited %s for a cluster down past resume_timeout %s", worst, resume)
	}
}
