package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgbridge/pgbridge/routing"
)

func churnCfg(limit, maxActive int, withC bool, psA, psB, psC, resA int, db string) *routing.Config {
	specs := []tenantSpec{
		{name: "a", poolSize: psA, reserve: resA, wait: 20 * time.Millisecond},
		{name: "b", poolSize: psB, minSize: 1, wait: 20 * time.Millisecond},
	}
	if withC {
		specs = append(specs, tenantSpec{name: "c", poolSize: psC, reserve: 1, wait: 20 * time.Millisecond})
	}
	cfg := config(limit, specs...)
	cfg.Backend.MaxActiveTransactions = maxActive
	cfg.Backend.IdleTimeout = time.Duration(1+rand.IntN(10)) * time.Millisecond
	if rand.IntN(2) == 0 {
		cfg.Backend.MaxLifetime = time.Duration(5+rand.IntN(50)) * time.Millisecond
	}
	if db != "" {
		cfg.Tenants["a"].Database = db
	}
	return cfg
}

func TestPoolInvariantsUnderChurn(t *testing.T) {
	for _, upd := range []bool{false, true} {
		for _, maxActive := range []int{0, 2} {
			t.Run(fmt.Sprintf("maxActive=%d,updates=%v", maxActive, upd), func(t *testing.T) { churnStress(t, maxActive, upd) })
		}
	}
}

func churnStress(t *testing.T, maxActive int, upd bool) {
	m, d := newManager(t, churnCfg(5, maxActive, true, 3, 3, 2, 1, ""), withInterval(2*time.Millisecond))
	stop := time.Now().Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	errBoom := errors.New("boom")
	for i := 0; i < 18; i++ {
		tenant := []string{"a", "b", "c"}[i%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(5000))*time.Microsecond)
				acq := m.Acquire
				if rand.IntN(5) == 0 {
					acq = m.Probe
				}
				c, err := acq(ctx, tenant)
				cancel()
				if err != nil {
					if !errors.Is(err, ErrWaitTimeout) && !errors.Is(err, context.DeadlineExceeded) &&
						!errors.Is(err, ErrTenantRemoved) && !errors.Is(err, ErrUnknownTenant) && !errors.Is(err, errBoom) {
						t.Errorf("Acquire: %v", err)
						return
					}
					failed.Add(1)
					continue
				}
				ok.Add(1)
				switch rand.IntN(4) {
				case 0:
					m.Idle(c)
					time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
					m.Busy(c)
				case 1:
					m.Pinned(c)
					time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(3000))*time.Microsecond)
					_ = m.Readmit(ctx, c, time.Millisecond)
					cancel()
				}
				time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
				if rand.IntN(8) == 0 {
					m.Discard(c)
				} else {
					m.Release(c)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) && !t.Failed() {
			time.Sleep(200 * time.Microsecond)
			checkInvariants(t, m)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for time.Now().Before(stop) {
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			db := ""
			if rand.IntN(3) == 0 {
				db = fmt.Sprintf("db%d", rand.IntN(3))
			}
			if upd {
				m.Update(churnCfg(2+rand.IntN(5), maxActive*rand.IntN(2), rand.IntN(3) != 0, 1+rand.IntN(3), 1+rand.IntN(3), 1+rand.IntN(2), rand.IntN(2), db))
			}
			if rand.IntN(4) == 0 {
				d.set(func(d *fakeDialer) { d.script = []error{errBoom, nil, errBoom} })
			}
			if rand.IntN(10) == 0 {
				m.reap()
			}
			if rand.IntN(5) == 0 {
				m.Suspect()
			}
		}
	}()
	wg.Wait()
	d.set(func(d *fakeDialer) { d.script = nil })
	if upd {
		m.Update(churnCfg(5, maxActive, true, 3, 3, 2, 1, ""))
	}
	t.Logf("%d acquisitions, %d failures", ok.Load(), failed.Load())
	eventually(t, "background dials done and adopted", func() bool {
		if !dialsAdopted(m)() {
			return false
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.retired) == 0
	})
	checkInvariants(t, m)
	checkPublic(t, m)
	for name, s := range m.Stats() {
		if s.InUse != 0 || s.Waiting != 0 || s.Dialing != 0 || s.Active != 0 || s.AdmitWaiting != 0 {
			t.Errorf("tenant %s after the churn: %+v", name, s)
		}
	}
	if a, _ := m.ActiveTransactions(); a != 0 {
		t.Errorf("active = %d after churn", a)
	}
	// every tenant can get pool_size connections now
	var held []*Conn
	for _, tn := range []string{"a", "b", "c"} {
		for i := 0; i < 1; i++ {
			c, err := m.Acquire(context.Background(), tn)
			if err != nil {
				t.Errorf("after churn, Acquire(%s) #%d: %v (stats %+v)", tn, i, err, m.Stats())
				continue
			}
			m.Release(c)
		}
	}
	for _, c := range held {
		m.Release(c)
	}
}
