package pool

import (
	"context"
	"testing"
	"time"
)

// b has queued (holding nothing) while the only spare slot was c's warm
// idle connection. Once that connection goes cold, a's new acquire - a
// already holds two connections - closes it and takes the slot, while b,
// holding nothing and waiting first, keeps waiting. The README promises
// "waiters are served fairly across tenants (a tenant holding nothing
// gets the next freed slot)".
func TestQueuedTenantGetsColdSlotBeforeNewcomer(t *testing.T) {
	clock := newFakeClock()
	specs := []tenantSpec{{name: "a", poolSize: 10}, {name: "b", poolSize: 10}, {name: "c", poolSize: 10}}
	m, _ := newManager(t, config(3, specs...), WithClock(clock.Now))
	a1, a2 := acquire(t, m, "a"), acquire(t, m, "a")
	c1 := acquire(t, m, "c")
	m.Release(c1) // idle, warm, c within its share

	bres := make(chan result, 1)
	acquireAsync(context.Background(), m, "b", bres)
	eventually(t, "b waiting", waiting(m, "b", 1))

	clock.Advance(2 * keepWarm) // c's connection is cold now

	ares := make(chan result, 1)
	acquireAsync(context.Background(), m, "a", ares)
	var pending []chan result
	select {
	case r := <-ares:
		pending = append(pending, bres)
		if r.err == nil {
			t.Errorf("a (holding 2) took the freed slot while b (holding nothing) had been waiting: stats %+v", m.Stats())
			m.Release(r.c)
		}
	case r := <-bres:
		pending = append(pending, ares)
		if r.err != nil {
			t.Fatal(r.err)
		}
		m.Release(r.c)
	case <-time.After(time.Second):
		t.Fatal("nobody got the cold slot")
	}
	m.Release(a1)
	m.Release(a2)
	for _, ch := range pending {
		if r := recv(t, ch); r.err == nil {
			m.Release(r.c)
		}
	}
}
