package pool_test

// Benchmarks of the pool's hot path: every transaction of a client in
// transaction mode is one Acquire and one Release. The backend connections
// are fakes that need no goroutine, so the numbers are the pool's own
// bookkeeping (one mutex, the idle stack, the fairness checks).

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgbridge/pgbridge/pool"
	"github.com/pgbridge/pgbridge/routing"
)

// discardConn is a backend socket that swallows writes (the Terminate a
// closed connection sends) and has nothing to read.
type discardConn struct{}

func (discardConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5432} }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// countingDialer hands out discardConns at once.
type countingDialer struct{ dials atomic.Int64 }

func (d *countingDialer) Dial(ctx context.Context, t *routing.Tenant) (*pool.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := d.dials.Add(1)
	return &pool.Conn{Conn: discardConn{}, PID: uint32(n), Params: map[string]string{"server_version": "15.0"}}, nil
}

// benchManager builds a Manager over tenants t0..t<n-1>, each with poolSize
// connections, sharing budget.
func benchManager(b *testing.B, tenants, poolSize, budget int, opts ...pool.Option) (*pool.Manager, *countingDialer) {
	b.Helper()
	return benchManagerFor(b, benchConfig(tenants, poolSize, budget), opts...)
}

func benchConfig(tenants, poolSize, budget int) *routing.Config {
	cfg := &routing.Config{
		Backend: routing.Backend{Host: "backend.invalid", Port: 5432, MaxConnections: budget, ConnectTimeout: time.Second},
		Tenants: map[string]*routing.Tenant{},
	}
	for i := range tenants {
		name := fmt.Sprintf("t%d", i)
		cfg.Tenants[name] = &routing.Tenant{
			Name: name, Database: "tenant_" + name, BackendUser: name + "_user",
			Policy: routing.Policy{PoolMode: routing.PoolTransaction, PoolSize: poolSize, PoolWaitTimeout: 10 * time.Second},
		}
	}
	return cfg
}

func benchManagerFor(b *testing.B, cfg *routing.Config, opts ...pool.Option) (*pool.Manager, *countingDialer) {
	b.Helper()
	d := &countingDialer{}
	m := pool.New(cfg, append([]pool.Option{pool.WithDialer(d)}, opts...)...)
	b.Cleanup(m.Close)
	return m, d
}

func acquireRelease(b *testing.B, m *pool.Manager, ctx context.Context, tenant string) {
	c, err := m.Acquire(ctx, tenant)
	if err != nil {
		b.Fatal(err)
	}
	m.Release(c)
}

// BenchmarkAcquireRelease is one client's transactions: the same idle
// connection comes back every time.
func BenchmarkAcquireRelease(b *testing.B) {
	m, d := benchManager(b, 1, 20, 20)
	ctx := context.Background()
	acquireRelease(b, m, ctx, "t0") // the one dial
	b.ReportAllocs()
	for b.Loop() {
		acquireRelease(b, m, ctx, "t0")
	}
	if n := d.dials.Load(); n != 1 {
		b.Fatalf("%d dials, want 1", n)
	}
}

// BenchmarkAcquireReleaseParallel is many clients of four tenants with
// enough connections for all of them: contention on the pool's mutex only.
func BenchmarkAcquireReleaseParallel(b *testing.B) {
	m, _ := benchManager(b, 4, 64, 256)
	parallelAcquireRelease(b, m, 4)
}

// parallelAcquireRelease runs 8 clients per CPU spread over tenants
// t0..t<busy-1>.
func parallelAcquireRelease(b *testing.B, m *pool.Manager, busy int64) {
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		tenant := fmt.Sprintf("t%d", next.Add(1)%busy)
		for pb.Next() {
			acquireRelease(b, m, ctx, tenant)
		}
	})
}

// BenchmarkAcquireReleaseWaiting has more clients than connections: most
// Acquires queue and get a connection handed over by a Release.
func BenchmarkAcquireReleaseWaiting(b *testing.B) {
	m, _ := benchManager(b, 1, 2, 2)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			acquireRelease(b, m, ctx, "t0")
		}
	})
}

// BenchmarkAcquireBudgetFull alternates between tenants while the shared
// budget holds one connection: every Acquire closes the other tenant's idle
// connection and dials (the fake dial is free, so this is the cost of the
// budget's bookkeeping). The clock jumps past the pool's keep-warm time
// between acquires; otherwise each one would wait for the idle connection
// to go cold, which is the pool's policy, not its cost.
func BenchmarkAcquireBudgetFull(b *testing.B) {
	var clock atomic.Int64
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	m, d := benchManager(b, 2, 4, 1, pool.WithClock(now))
	ctx := context.Background()
	tenants := []string{"t0", "t1"}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		clock.Add(int64(time.Hour))
		acquireRelease(b, m, ctx, tenants[i%2])
		i++
	}
	if d.dials.Load() < int64(i) {
		b.Fatalf("%d dials for %d alternating acquires", d.dials.Load(), i)
	}
}

// BenchmarkAcquireReleaseAdmission is a fleet of 1,000 tenants of which
// four are busy, under backend.max_active_transactions: most Acquires wait
// for admission, and each Release admits the next.
func BenchmarkAcquireReleaseAdmission(b *testing.B) {
	cfg := benchConfig(1000, 4, 4000)
	cfg.Backend.MaxActiveTransactions = 2
	m, _ := benchManagerFor(b, cfg)
	parallelAcquireRelease(b, m, 4)
}
