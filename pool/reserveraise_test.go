package pool

import (
	"context"
	"testing"
	"time"
)

// After a reload gives tenant a a reserve, a's first acquire finds the
// whole budget held by b's idle connections. b is not using them; a is
// below its reserve, which "no other tenant's demand can take". Yet a
// waits (and times out) because b's idle connections are "warm".
func TestRaisedReserveTakesWarmIdle(t *testing.T) {
	specA := tenantSpec{name: "a", poolSize: 2, wait: 500 * time.Millisecond} // < keepWarm
	specB := tenantSpec{name: "b", poolSize: 10}
	m, _ := newManager(t, config(2, specA, specB))
	b1, b2 := acquire(t, m, "b"), acquire(t, m, "b")
	m.Release(b1)
	m.Release(b2) // both idle, used just now

	specA.reserve = 2
	m.Update(config(2, specA, specB))

	start := time.Now()
	c, err := m.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatalf("tenant a, below its reserve of 2 with b's 2 connections idle, got %v after %s (stats %+v)",
			err, time.Since(start).Round(time.Millisecond), m.Stats())
	}
	m.Release(c)
}
