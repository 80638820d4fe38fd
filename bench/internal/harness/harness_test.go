package harness

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgbridge/pgbridge/bench/internal/report"
	"github.com/pgbridge/pgbridge/internal/pgtest"
)

// testEnv is an env with fake tenants, enough to build scenarios and
// configuration files without starting anything.
func testEnv(quick bool) *env {
	o := Options{Quick: quick}
	o.Defaults()
	e := &env{opts: o, pg: &pgtest.Cluster{Port: 5999}, dir: "/work/dir", bouncerVersion: "1.18.0"}
	for _, n := range []string{"t0", "t1"} {
		e.tenants = append(e.tenants, tenant{
			Tenant:       pgtest.Tenant{Name: n, Database: "tenant_" + n, User: n + "_user", Password: "pw"},
			AppUser:      n + "_app",
			RoleVerifier: "SCRAM-SHA-256$4096:c2FsdA==$a:b",
		})
	}
	return e
}

func TestScenarios(t *testing.T) {
	e := testEnv(false)
	names := map[string]bool{}
	goals := 0
	for _, s := range e.scenarios() {
		m := s.meta
		if names[m.Name] {
			t.Errorf("duplicate scenario %s", m.Name)
		}
		names[m.Name] = true
		if m.Title == "" || m.Measures == "" || m.Command == "" {
			t.Errorf("%s: missing description %+v", m.Name, m)
		}
		if m.Goal != nil {
			goals++
		}
		if (m.Kind == report.KindPgbench) != (s.pgbench != nil) {
			t.Errorf("%s: kind %s with pgbench spec %v", m.Name, m.Kind, s.pgbench)
		}
	}
	for _, want := range []string{"select-simple-c1", "select-extended-c16", "select-prepared-c16", "tpcb-c16",
		"select-c400-pool20", "connect-per-txn", "idle-1000", "idle-10000", "noisy-neighbour", "storm-500"} {
		if !names[want] {
			t.Errorf("no scenario %s", want)
		}
	}
	if goals != 7 { // issue 7's table
		t.Errorf("%d goals, want 7", goals)
	}

	byName := map[string]scenario{}
	for _, s := range e.scenarios() {
		byName[s.meta.Name] = s
	}
	prep := byName["select-prepared-c16"]
	if !prep.bouncerSession || prep.meta.Differs[report.PgBouncer] == "" || prep.meta.Differs[report.Pgbridge] != "" {
		t.Error("PgBouncer 1.18 does not run -M prepared in session mode, or the report does not say so")
	}
	if byName["select-simple-c16"].bouncerSession {
		t.Error("PgBouncer runs -M simple in session mode")
	}
	for name, s := range byName {
		if noisy := name == "noisy-neighbour"; (s.maxActive > 0) != noisy || (s.meta.Differs[report.Pgbridge] != "") != noisy {
			t.Errorf("%s: pgbridge runs with max_active_transactions %d (%q)", name, s.maxActive, s.meta.Differs[report.Pgbridge])
		}
	}
	if s := byName["idle-10000"]; s.notApplicable == nil || s.notApplicable(report.Direct) == "" || s.notApplicable(report.PgBouncer) != "" {
		t.Error("direct is not n/a at 10,000 idle clients")
	}
	if s := byName["idle-1000"]; s.notApplicable(report.Direct) != "" || s.notApplicable(report.GoRelay) == "" || s.notApplicable(report.GoRelayEpoll) == "" {
		t.Error("direct is n/a at 1,000 idle clients, or a Go relay is not")
	}
	if c := byName["select-c400-pool20"].meta.Command; !strings.Contains(c, "-c 400 -j 2 -T 20") {
		t.Errorf("c400 command %q", c)
	}

	e.bouncerPrepared = true // PgBouncer 1.21 or later
	for _, s := range e.scenarios() {
		if s.meta.Name == "select-prepared-c16" && (s.bouncerSession || s.meta.Differs != nil) {
			t.Error("a PgBouncer that keeps prepared statements still runs in session mode")
		}
	}

	// Quick runs: short, but the 400-client run stays long enough for
	// pgbench's logins.
	q := testEnv(true)
	for _, s := range q.scenarios() {
		if s.meta.Name == "select-c400-pool20" && s.pgbench.seconds(&q.opts) != 8 {
			t.Errorf("quick c400 runs %d s", s.pgbench.seconds(&q.opts))
		}
		if s.meta.Name == "select-simple-c16" && s.pgbench.seconds(&q.opts) != 2 {
			t.Errorf("quick select runs %d s", s.pgbench.seconds(&q.opts))
		}
		if s.fullOnly != strings.HasSuffix(s.meta.Name, "-c1") {
			t.Errorf("%s: fullOnly %v", s.meta.Name, s.fullOnly)
		}
	}
}

func TestSelected(t *testing.T) {
	for _, tc := range []struct {
		want []string
		name string
		ok   bool
	}{
		{nil, "anything", true},
		{[]string{"idle-1000"}, "idle-1000", true},
		{[]string{"idle-1000"}, "idle-10000", false},
		{[]string{"idle-*"}, "idle-10000", true},
		{[]string{"select-*", "storm-500"}, "storm-500", true},
		{[]string{"select-*"}, "tpcb-c16", false},
	} {
		if got := selected(tc.want, tc.name); got != tc.ok {
			t.Errorf("selected(%v, %s) = %v", tc.want, tc.name, got)
		}
	}
}

func TestPgbouncerIni(t *testing.T) {
	e := testEnv(false)
	ini := e.pgbouncerIni(6543, false)
	for _, want := range []string{
		"tenant_t0 = host=127.0.0.1 port=5999 dbname=tenant_t0\n",
		"tenant_t1 = host=127.0.0.1 port=5999 dbname=tenant_t1\n",
		"listen_port = 6543\n", "pool_mode = transaction\n", "default_pool_size = 20\n",
		"auth_type = scram-sha-256\n", "auth_file = /work/dir/userlist.txt\n",
		"max_client_conn = 10100\n",
	} {
		if !strings.Contains(ini, want) {
			t.Errorf("pgbouncer.ini lacks %q:\n%s", want, ini)
		}
	}
	if strings.Contains(ini, "max_prepared_statements") {
		t.Error("max_prepared_statements set for PgBouncer 1.18")
	}
	if ini := e.pgbouncerIni(6543, true); !strings.Contains(ini, "pool_mode = session\n") {
		t.Errorf("session-mode pgbouncer.ini:\n%s", ini)
	}
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{"vm": "vm", "db host/1": "db-host-1", "": "host", "a.b-c_d": "a.b-c_d"} {
		if got := safeName(in); got != want {
			t.Errorf("safeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDefaults(t *testing.T) {
	var full, quick Options
	full.Defaults()
	quick.Quick = true
	quick.Defaults()
	if full.RunTime != 20*time.Second || full.Rounds != 2 || quick.RunTime != 2*time.Second || quick.Rounds != 1 {
		t.Fatalf("defaults: full %+v, quick %+v", full, quick)
	}
	if len(full.Targets) != 3 || full.Targets[0] != report.Direct || full.Tenants != 4 || full.PoolSize != 20 {
		t.Fatalf("defaults: %+v", full)
	}
}

func TestRunBounded(t *testing.T) {
	ctx := context.Background()
	res, err := runBounded(ctx, "sh", exec.Command("sh", "-c", "echo out; echo err >&2; exit 3"), nil, 10*time.Second)
	if err != nil || res.exitCode != 3 || res.stdout != "out\n" || res.stderr != "err\n" {
		t.Fatalf("runBounded = %+v, %v", res, err)
	}

	// A command that outlives its limit is stopped, with whatever it
	// started in its process group.
	start := time.Now()
	res, err = runBounded(ctx, "sleeper", exec.Command("sh", "-c", "sleep 30 & sleep 30"), nil, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not finish") || time.Since(start) > 10*time.Second {
		t.Fatalf("runBounded over its limit = %+v, %v after %v", res, err, time.Since(start))
	}

	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := runBounded(cctx, "sleeper", exec.Command("sleep", "30"), nil, time.Minute); err != context.Canceled {
		t.Fatalf("cancelled runBounded: %v", err)
	}
}

func TestProcStop(t *testing.T) {
	// A process that ignores SIGTERM is killed after the grace period.
	p, err := startProc("stubborn", exec.Command("sh", "-c", "trap '' TERM; sleep 30"), "")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the shell install its trap
	start := time.Now()
	p.stop(syscall.SIGTERM, 300*time.Millisecond)
	if !p.exited() || time.Since(start) > 5*time.Second {
		t.Fatalf("stop took %v, exited %v", time.Since(start), p.exited())
	}
	p.stop(syscall.SIGTERM, time.Second) // no-op once exited
}

// raiseNoFile lifts the open-files limit to what the scenarios need, or
// says why it could not.
func TestRaiseNoFile(t *testing.T) {
	var before syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &before); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &before) })
	need := uint64(before.Cur) + 100
	note := raiseNoFile(Options{StormClients: int(need) - 2000})
	var after syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &after); err != nil {
		t.Fatal(err)
	}
	switch {
	case uint64(after.Cur) >= need && note != "":
		t.Errorf("limit raised to %d, yet the note says %q", after.Cur, note)
	case uint64(after.Cur) < need && note == "":
		t.Errorf("limit %d below the %d needed, and no note", after.Cur, need)
	}
	if note := raiseNoFile(Options{}); note != "" {
		t.Errorf("a need below the limit gives the note %q", note)
	}
}

func TestSettledMemory(t *testing.T) {
	// pgbridge after 10,000 idle logins: the RSS falls for a while as the
	// runtime returns the logins' garbage, then stays.
	readings := []int64{207240, 180000, 120000, 97000, 96900, 96800}
	i := 0
	memory := func() (int64, string, error) {
		v := readings[min(i, len(readings)-1)]
		i++
		return v, "pgbridge RSS", nil
	}
	got, src, err := settledMemory(context.Background(), memory, time.Millisecond, time.Minute)
	if err != nil || src != "pgbridge RSS" {
		t.Fatal(src, err)
	}
	if got != 96900 {
		t.Errorf("settled at %d KiB, want 96900 (the first reading within 1%% of the one before)", got)
	}

	// A reading that keeps falling is taken when the limit is reached.
	v := int64(1 << 30)
	falling := func() (int64, string, error) { v -= v / 10; return v, "x", nil }
	start := time.Now()
	if _, _, err := settledMemory(context.Background(), falling, time.Millisecond, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s despite a 50 ms limit", d)
	}

	for _, tc := range []struct {
		prev, cur int64
		want      bool
	}{
		{100000, 100000, true}, {100000, 99000, true}, {100000, 98999, false},
		{1000, 940, true}, {1000, 930, false}, {1000, 5000, true},
	} {
		if got := memoryStable(tc.prev, tc.cur); got != tc.want {
			t.Errorf("memoryStable(%d, %d) = %v, want %v", tc.prev, tc.cur, got, tc.want)
		}
	}
}

// pgbridge parks an idle session after 1 s plus up to a watchdog tick
// (250 ms): the idle scenarios must not read memory before that, quick or
// not.
func TestIdleSettleOutlastsParking(t *testing.T) {
	for _, quick := range []bool{false, true} {
		o := Options{Quick: quick}
		o.Defaults()
		if o.IdleSettle < 2*time.Second {
			t.Errorf("quick=%v: idle settle %s reads before pgbridge parks its sessions", quick, o.IdleSettle)
		}
	}
}
