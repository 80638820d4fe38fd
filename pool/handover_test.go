package pool

import (
	"context"
	"testing"
	"time"
)

// Maintenance hands a cold idle slot to the first waiting tenant in
// round-robin order, not to the neediest one (its comment: "granted to
// the neediest waiting tenant it gives room to"; README: "a tenant
// holding nothing gets the next freed slot").
func TestHandOverColdGoesToNeediest(t *testing.T) {
	clock := newFakeClock()
	specs := []tenantSpec{{name: "a", poolSize: 10}, {name: "b", poolSize: 10}, {name: "c", poolSize: 10}}
	m, _ := newManager(t, config(3, specs...), WithClock(clock.Now))
	a1, a2 := acquire(t, m, "a"), acquire(t, m, "a")
	c1 := acquire(t, m, "c")
	m.Release(c1) // idle and warm

	ares, bres := make(chan result, 1), make(chan result, 1)
	acquireAsync(context.Background(), m, "a", ares)
	eventually(t, "a waiting", waiting(m, "a", 1))
	acquireAsync(context.Background(), m, "b", bres)
	eventually(t, "b waiting", waiting(m, "b", 1))

	clock.Advance(2 * keepWarm)
	m.reap() // the maintenance round

	var rest chan result
	select {
	case r := <-ares:
		rest = bres
		t.Errorf("a (holding 2 of 10) got the cold slot while b (holding 0 of 10) waited")
		if r.err == nil {
			m.Release(r.c)
		}
	case r := <-bres:
		rest = ares
		if r.err == nil {
			m.Release(r.c)
		}
	case <-time.After(time.Second):
		t.Fatal("nobody got the cold slot")
	}
	m.Release(a1)
	m.Release(a2)
	if r := recv(t, rest); r.err == nil {
		m.Release(r.c)
	}
}
