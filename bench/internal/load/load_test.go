package load

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"

	"github.com/pgbridge/pgbridge/bench/internal/report"
	"github.com/pgbridge/pgbridge/internal/pgtest"
)

// logins reach the tenants of the package's throwaway cluster directly.
var logins []Login

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(c *pgtest.Cluster) int {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, name := range []string{"loud", "calm1", "calm2"} {
			t, err := c.CreateTenant(ctx, name)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			logins = append(logins, Login{Tenant: name, Host: c.Host, Port: c.Port,
				User: t.User, Password: t.Password, Database: t.Database})
		}
		if code := m.Run(); code != 0 {
			return code
		}
		// goleak.VerifyTestMain would exit before the cluster stops.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
		return 0
	}))
}

func TestValidate(t *testing.T) {
	l := []Login{{Tenant: "a"}, {Tenant: "b"}}
	for _, tc := range []struct {
		spec Spec
		bad  string
	}{
		{Spec{Mode: ModeNoisy, Logins: l, Seconds: 1, NoisyTenant: "a", NoisyClients: 1, QuietClients: 1, QuietRate: 1}, ""},
		{Spec{Mode: ModeNoisy, Logins: l, Seconds: 1, NoisyTenant: "a", Baseline: true, QuietClients: 1, QuietRate: 1}, ""},
		{Spec{Mode: ModeNoisy, Logins: l, Seconds: 1, NoisyTenant: "x", NoisyClients: 1, QuietClients: 1, QuietRate: 1}, "no login"},
		{Spec{Mode: ModeNoisy, Logins: l[:1], Seconds: 1, NoisyTenant: "a", NoisyClients: 1, QuietClients: 1, QuietRate: 1}, "quiet tenant"},
		{Spec{Mode: ModeNoisy, Logins: l, NoisyTenant: "a", NoisyClients: 1, QuietClients: 1, QuietRate: 1}, "seconds"},
		{Spec{Mode: ModeNoisy, Logins: l[:1], Seconds: 1, NoisyTenant: "a", NoisyClients: 1, NoisyOnly: true}, ""},
		{Spec{Mode: ModeNoisy, Logins: l, Seconds: 1, NoisyTenant: "a", NoisyClients: 1, NoisyOnly: true, Baseline: true}, "exclude"},
		{Spec{Mode: ModeStorm, Logins: l, Clients: 3}, ""},
		{Spec{Mode: ModeIdle, Logins: l}, "clients"},
		{Spec{Mode: "chaos", Logins: l}, "unknown mode"},
		{Spec{Mode: ModeIdle, Clients: 1}, "no logins"},
	} {
		err := tc.spec.Validate()
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%+v: %v", tc.spec, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%+v: error %v, want one about %q", tc.spec, err, tc.bad)
		}
	}
}

func TestRawConnectSCRAM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys := newKeyCache()
	for range 3 { // the second and third logins use the cached keys
		c, err := rawConnect(ctx, logins[0], keys)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.simpleQuery(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		err = c.simpleQuery(ctx, "SELECT 1/0")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22012" {
			t.Fatalf("division by zero gave %v", err)
		}
		c.close()
	}
	if len(keys.keys) != 1 {
		t.Fatalf("%d cached key sets, want 1", len(keys.keys))
	}
	bad := logins[0]
	bad.Password = "wrong"
	_, err := rawConnect(ctx, bad, keys)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password gave %v, want 28P01", err)
	}
}

// TestNoisySmoke runs the noisy-neighbour workload for about a second per
// variant against PostgreSQL itself.
func TestNoisySmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := Spec{
		Mode: ModeNoisy, Logins: logins, Seconds: 1,
		NoisyTenant: "loud", NoisyClients: 2, QuietClients: 2, QuietRate: 40,
		Query: "SELECT $1::int", MaxArg: 1000,
	}
	res, err := Noisy(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tenants) != 3 || res.Seconds < 0.9 {
		t.Fatalf("result %+v", res)
	}
	for _, tr := range res.Tenants {
		if tr.Errors != 0 || tr.Latency.Count == 0 || tr.Latency.P99 <= 0 || tr.Latency.P50 > tr.Latency.P99 {
			t.Errorf("tenant %+v", tr)
		}
		switch tr.Role {
		case report.RoleNoisy:
			if tr.Tenant != "loud" || tr.Clients != 2 || tr.QPS < 100 {
				t.Errorf("noisy tenant %+v", tr)
			}
		case report.RoleQuiet:
			// 40 per second for a second, give or take the edges.
			if tr.Clients != 2 || tr.Queries < 30 || tr.Queries > 42 {
				t.Errorf("quiet tenant %+v", tr)
			}
		}
	}

	spec.Baseline = true
	res, err = Noisy(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tenants) != 2 || res.Tenants[0].Role != report.RoleQuiet || res.Tenants[0].Tenant == "loud" {
		t.Fatalf("baseline %+v", res)
	}

	// The split run: the noisy tenant alone in one call, the quiet ones
	// (baseline) in another, both measuring the same window.
	start := time.Now().Add(2 * time.Second)
	noisyOnly := spec
	noisyOnly.Baseline, noisyOnly.NoisyOnly, noisyOnly.StartAt = false, true, start.UnixNano()
	res, err = Noisy(ctx, noisyOnly)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tenants) != 1 || res.Tenants[0].Role != report.RoleNoisy || res.Tenants[0].Latency.Count == 0 {
		t.Fatalf("noisy only %+v", res)
	}
	if finished := time.Now(); finished.Before(start.Add(time.Second)) {
		t.Fatalf("noisy only finished at %s, before its window (%s + 1s) was over", finished, start)
	}
	late := spec
	late.StartAt = time.Now().Add(-time.Second).UnixNano()
	if _, err := Noisy(ctx, late); err == nil || !strings.Contains(err.Error(), "start time") {
		t.Fatalf("start time already past: %v", err)
	}

	// A failing query is counted per tenant, with its message.
	spec.Query = "SELECT 1/0"
	spec.Seconds = 0.3
	res, err = Noisy(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "warm-up") {
		t.Fatalf("failing query: %+v, %v; want a warm-up error", res, err)
	}
}

func TestStormSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Storm(ctx, Spec{Mode: ModeStorm, Logins: logins, Clients: 30})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 30 || res.Errors != 0 || res.AllConnectedSeconds <= 0 ||
		res.AllQueriedSeconds < res.AllConnectedSeconds-1e-9 || res.Connect.Count != 30 || res.FirstQuery.Count != 30 {
		t.Fatalf("storm %+v", res)
	}

	bad := append([]Login(nil), logins...)
	bad[1].Password = "wrong"
	if _, err := Storm(ctx, Spec{Mode: ModeStorm, Logins: bad, Clients: 3}); err == nil {
		t.Fatal("storm with a wrong password did not fail before the storm")
	}
}

func TestIdleSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	release := make(chan struct{})
	var during int64
	res, err := Idle(ctx, Spec{Mode: ModeIdle, Logins: logins, Clients: 25, Parallel: 4, HoldSeconds: 10},
		func(r *report.IdleResult) {
			if r.Connected != 25 {
				t.Errorf("connected callback with %+v", r)
			}
			// The clients are connected and idle now.
			defer close(release)
			during = countBackends(t, ctx)
		}, release)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 25 || res.Errors != 0 || res.ConnectSeconds <= 0 {
		t.Fatalf("idle %+v", res)
	}
	// Clients go to the tenants in turn: the first tenant has 9 of the 25,
	// plus the connection that counts.
	if during != 10 {
		t.Fatalf("%d sessions of the first tenant while the idle clients were connected, want 10", during)
	}
}

// countBackends counts the sessions of the first tenant's role (a role
// sees only its own sessions' details in pg_stat_activity).
func countBackends(t *testing.T, ctx context.Context) int64 {
	t.Helper()
	cfg, err := pgxConfig(logins[0], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int64
	err = c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = current_user").Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
