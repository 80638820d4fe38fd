package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gopkg.in/yaml.v3"

	"github.com/pgbridge/pgbridge/internal/pgtest"
)

// These tests run the real binary against a real PostgreSQL: signals,
// file reloads and the HTTP endpoints are process-level behaviour.

var (
	cluster *pgtest.Cluster
	tenants = map[string]pgtest.Tenant{}
	binary  string
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(c *pgtest.Cluster) int {
		cluster = c
		dir, err := os.MkdirTemp("", "pgbridge-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "pgbridge")
		if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build pgbridge: %v\n%s", err, out)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, name := range []string{"acme", "globex", "umbrella"} {
			t, err := c.CreateTenant(ctx, name)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			tenants[name] = t
		}
		return m.Run()
	}))
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is one pgbridge process.
type proc struct {
	t         *testing.T
	cmd       *exec.Cmd
	cfgPath   string
	doc       map[string]any
	port      int
	adminPort int
	log       *syncBuffer
	exited    chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tenantDoc(names ...string) map[string]any {
	ts := map[string]any{}
	for _, n := range names {
		tn := tenants[n]
		ts[n] = map[string]any{
			"database": tn.Database, "backend_user": tn.User, "backend_password": tn.Password,
			"users": map[string]any{n + "_app": map[string]any{"password": "pw-" + n}},
		}
	}
	return ts
}

func startProc(t *testing.T, edit func(map[string]any)) *proc {
	t.Helper()
	p := &proc{t: t, port: freePort(t), adminPort: freePort(t), log: &syncBuffer{}, exited: make(chan error, 1)}
	p.doc = map[string]any{
		"listen":  map[string]any{"address": fmt.Sprintf("127.0.0.1:%d", p.port), "shutdown_timeout": "10s"},
		"admin":   map[string]any{"address": fmt.Sprintf("127.0.0.1:%d", p.adminPort)},
		"backend": map[string]any{"host": cluster.Host, "port": cluster.Port, "tls": map[string]any{"mode": "disable"}, "resume_timeout": "2s"},
		"log":     map[string]any{"format": "json"},
		"tenants": tenantDoc("acme", "globex"),
	}
	if edit != nil {
		edit(p.doc)
	}
	p.cfgPath = filepath.Join(t.TempDir(), "pgbridge.yaml")
	p.write()
	p.cmd = exec.Command(binary, "serve", "--config", p.cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("pgbridge log:\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.adminPort))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbridge did not start:\n%s", p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func (p *proc) write() {
	data, err := yaml.Marshal(p.doc)
	if err != nil {
		p.t.Fatal(err)
	}
	tmp := p.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(tmp, p.cfgPath); err != nil { // atomic, like a ConfigMap swap
		p.t.Fatal(err)
	}
}

func (p *proc) dsn(tenant string, extra ...string) string {
	s := fmt.Sprintf("host=127.0.0.1 port=%d user=%s_app password=pw-%s dbname=%s sslmode=disable connect_timeout=10",
		p.port, tenant, tenant, tenant)
	return strings.Join(append([]string{s}, extra...), " ")
}

func (p *proc) connect(tenant string, extra ...string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cc, err := pgx.ParseConfig(p.dsn(tenant, extra...))
	if err != nil {
		return nil, err
	}
	cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	c, err := pgx.ConnectConfig(ctx, cc)
	if err == nil {
		p.t.Cleanup(func() { _ = c.Close(context.Background()) })
	}
	return c, err
}

func (p *proc) mustConnect(tenant string) *pgx.Conn {
	p.t.Helper()
	c, err := p.connect(tenant)
	if err != nil {
		p.t.Fatalf("connect %s: %v", tenant, err)
	}
	return c
}

func (p *proc) get(path string) (int, string) {
	p.t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.adminPort, path))
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of one sample line of /metrics.
func (p *proc) metric(series string) float64 {
	p.t.Helper()
	_, body := p.get("/metrics")
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		p.t.Fatalf("no series %s in /metrics", series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		p.t.Fatal(err)
	}
	return v
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// code is the SQLSTATE of err, "" when it is not a PostgreSQL error.
func code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestMetricsAfterAScriptedWorkload(t *testing.T) {
	p := startProc(t, func(m map[string]any) {
		m["tenants"].(map[string]any)["acme"].(map[string]any)["max_client_connections"] = 2
	})
	a1, a2 := p.mustConnect("acme"), p.mustConnect("acme")
	g := p.mustConnect("globex")
	for i := 0; i < 10; i++ {
		if _, err := a1.Exec(context.Background(), "select 1"); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		if _, err := g.Exec(context.Background(), "select 1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a2.Exec(context.Background(), "select 1/0"); code(err) != "22012" {
		t.Fatalf("division by zero: %v", err)
	}
	if _, err := p.connect("acme"); code(err) != "53300" {
		t.Fatalf("third acme client: %v", err)
	}
	if _, err := p.connect("globex", "password=wrong"); code(err) != "28P01" {
		t.Fatalf("bad globex password: %v", err)
	}
	want := map[string]float64{
		`pgbridge_queries_total{tenant="acme"}`:                                  11,
		`pgbridge_queries_total{tenant="globex"}`:                                4,
		`pgbridge_transactions_total{tenant="acme"}`:                             11,
		`pgbridge_client_rejections_total{reason="client_cap",tenant="acme"}`:    1,
		`pgbridge_client_rejections_total{reason="auth_failed",tenant="globex"}`: 1,
		`pgbridge_client_rejections_total{reason="client_cap",tenant="globex"}`:  0,
		`pgbridge_client_connections{state="idle",tenant="acme"}`:                2,
		`pgbridge_client_connections{state="idle",tenant="globex"}`:              1,
		`pgbridge_errors_total{class="22",tenant="acme"}`:                        1,
		`pgbridge_query_duration_seconds_count{tenant="acme"}`:                   11,
		`pgbridge_backend_budget{state="limit"}`:                                 100,
		`pgbridge_config_last_reload_successful`:                                 1,
	}
	for series, v := range want {
		if got := p.metric(series); got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	if got := p.metric(`pgbridge_backend_connects_total{result="ok"}`); got < 1 {
		t.Errorf("backend connects ok = %v", got)
	}
	// The OpenMetrics form is served to a scraper that asks for it.
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", p.adminPort), nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Content-Type"), "openmetrics") || !strings.HasSuffix(strings.TrimSpace(string(body)), "# EOF") {
		t.Errorf("OpenMetrics not served: %s", resp.Header.Get("Content-Type"))
	}
}

func TestReloadOnFileChangeAndSighup(t *testing.T) {
	p := startProc(t, nil)
	if _, err := p.connect("umbrella"); code(err) != "28P01" {
		t.Fatalf("umbrella before it is configured: %v", err)
	}
	ts0 := p.metric("pgbridge_config_last_reload_success_timestamp_seconds")
	// A change of the file is picked up by the watcher.
	p.doc["tenants"] = tenantDoc("acme", "globex", "umbrella")
	p.write()
	eventually(t, 10*time.Second, "umbrella to be served after the file changed", func() bool {
		_, err := p.connect("umbrella")
		return err == nil
	})
	if ts := p.metric("pgbridge_config_last_reload_success_timestamp_seconds"); ts <= ts0 {
		t.Errorf("reload timestamp did not move: %v -> %v", ts0, ts)
	}
	if _, body := p.get("/metrics"); !strings.Contains(body, `pgbridge_queries_total{tenant="umbrella"} 0`) {
		t.Error("the added tenant has no series")
	}
	// A bad file changes nothing and says so.
	good, _ := os.ReadFile(p.cfgPath)
	if err := os.WriteFile(p.cfgPath, append(good, []byte("\nbogus_key: 1\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the failed reload to show", func() bool {
		return p.metric("pgbridge_config_last_reload_successful") == 0
	})
	if !strings.Contains(p.log.String(), "bogus_key") {
		t.Errorf("the log does not name the bad key")
	}
	if _, err := p.connect("umbrella"); err != nil {
		t.Errorf("the old configuration stopped serving: %v", err)
	}
	// SIGHUP after fixing it (the watcher would do the same).
	delete(p.doc["tenants"].(map[string]any), "umbrella")
	p.write()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the reload to succeed", func() bool {
		return p.metric("pgbridge_config_last_reload_successful") == 1
	})
	if _, err := p.connect("umbrella"); code(err) != "28P01" {
		t.Errorf("umbrella after removal: %v", err)
	}
	if _, body := p.get("/metrics"); strings.Contains(body, `tenant="umbrella"`) {
		t.Error("the removed tenant's series are still exported")
	}
}

func TestReadyzFollowsTheBackend(t *testing.T) {
	p := startProc(t, nil)
	if st, body := p.get("/readyz"); st != 200 {
		t.Fatalf("/readyz = %d %s", st, body)
	}
	c := p.mustConnect("acme")
	if _, err := c.Exec(context.Background(), "select 1"); err != nil {
		t.Fatal(err)
	}
	if err := cluster.StopServer(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cluster.StartServer() }()
	eventually(t, 10*time.Second, "/readyz to turn 503", func() bool {
		st, body := p.get("/readyz")
		return st == 503 && strings.Contains(body, "unreachable")
	})
	if st, _ := p.get("/healthz"); st != 200 {
		t.Errorf("/healthz = %d while the backend is down", st)
	}
	if err := cluster.StartServer(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "/readyz to turn 200", func() bool {
		st, _ := p.get("/readyz")
		return st == 200
	})
}

func TestSigtermLetsTheTransactionCommit(t *testing.T) {
	p := startProc(t, nil)
	c := p.mustConnect("acme")
	ctx := context.Background()
	if _, err := c.Exec(ctx, "create table if not exists drain_probe (v int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "truncate drain_probe"); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "insert into drain_probe values (1)"); err != nil {
		t.Fatal(err)
	}
	slept := make(chan error, 1)
	go func() {
		_, err := tx.Exec(ctx, "select pg_sleep(2)")
		slept <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "/readyz to say draining", func() bool {
		st, body := p.get("/readyz")
		return st == 503 && strings.Contains(body, "draining")
	})
	if _, err := p.connect("globex"); err == nil {
		t.Error("a new login was accepted while draining")
	}
	if err := <-slept; err != nil {
		t.Fatalf("the running statement: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit while draining: %v", err)
	}
	_, err = c.Exec(ctx, "select 1")
	if code(err) != "57P01" {
		t.Errorf("after the commit: %v, want 57P01", err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("exit: %v, want status 0", err)
		}
		p.exited <- err // for Cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("pgbridge did not exit after the drain")
	}
	n, err := cluster.QueryInt(ctx, tenants["acme"].Database, "select count(*) from drain_probe")
	if err != nil || n != 1 {
		t.Errorf("committed rows = %d (%v), want 1", n, err)
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	p := startProc(t, nil)
	c := p.mustConnect("acme")
	if _, err := c.Exec(context.Background(), "begin"); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("exit: %v, want status 1", err)
		}
		p.exited <- err
	case <-time.After(3 * time.Second):
		t.Fatal("a second signal did not end the process (an open transaction would hold the drain for 10s)")
	}
}

// An idle router answers /readyz without opening anything on the backend,
// so health checks never keep an Aurora Serverless cluster awake.
func TestReadyzDoesNotTouchAnIdleBackend(t *testing.T) {
	p := startProc(t, nil)
	ctx := context.Background()
	sessions := func() int64 {
		n, err := cluster.QueryInt(ctx, "postgres",
			"select coalesce(sum(sessions), 0)::bigint from pg_stat_database where datname in ($1, $2)", tenants["acme"].Database, tenants["globex"].Database)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	s0 := sessions()
	for range 20 {
		if st, body := p.get("/readyz"); st != 200 {
			t.Fatalf("/readyz = %d %s", st, body)
		}
	}
	time.Sleep(1500 * time.Millisecond) // sessions are flushed to the statistics at most every second
	if s := sessions(); s != s0 {
		t.Errorf("%d backend sessions were opened by health checks of an idle router", s-s0)
	}
	// The measure sees a session when there is one.
	if _, err := p.mustConnect("acme").Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the router's backend session to be counted", func() bool { return sessions() > s0 })
}
