package pool

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// With short holds and a maintenance round every 20 ms, no Acquire should
// wait anywhere near keepWarm+period unless a wake-up is lost.
func TestNoLostWakeups(t *testing.T) {
	cfg := config(4,
		tenantSpec{name: "a", poolSize: 3, reserve: 1, wait: 10 * time.Second},
		tenantSpec{name: "b", poolSize: 2, minSize: 1, wait: 10 * time.Second},
		tenantSpec{name: "c", poolSize: 4, wait: 10 * time.Second},
		tenantSpec{name: "d", poolSize: 1, wait: 10 * time.Second})
	cfg.Backend.MaxActiveTransactions = 3
	m, d := newManager(t, cfg, withInterval(20*time.Millisecond))
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	worstT := ""
	for i := 0; i < 16; i++ {
		tenant := []string{"a", "b", "c", "d"}[i%4]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				t0 := time.Now()
				c, err := m.Acquire(context.Background(), tenant)
				el := time.Since(t0)
				mu.Lock()
				if el > worst {
					worst, worstT = el, tenant
				}
				mu.Unlock()
				if err != nil {
					t.Errorf("Acquire(%s) after %s: %v", tenant, el, err)
					return
				}
				if rand.IntN(3) == 0 {
					m.Idle(c)
					time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
					m.Busy(c)
				}
				time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
				if rand.IntN(20) == 0 {
					m.Discard(c)
				} else {
					m.Release(c)
				}
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	t.Logf("worst wait %s (%s), dials %d", worst, worstT, d.total())
	if worst > 1500*time.Millisecond {
		t.Errorf("an Acquire waited %s", worst)
	}
}
