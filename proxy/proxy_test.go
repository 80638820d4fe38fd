package proxy_test

// Shared harness of the proxy integration tests: one throwaway PostgreSQL
// cluster for the package (started by pgtest in TestMain), the Bridge
// tenants provisioned once on it, and startRouter, which builds a fresh
// pool + proxy for one test from a YAML configuration written in Go.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"gopkg.in/yaml.v3"

	"github.com/pgbridge/pgbridge/internal/pgtest"
	"github.com/pgbridge/pgbridge/pool"
	"github.com/pgbridge/pgbridge/proxy"
	"github.com/pgbridge/pgbridge/routing"
)

var (
	cluster *pgtest.Cluster
	// tenants are provisioned once in TestMain. acme and globex serve most
	// tests; initech and umbrella are kept for tests that count backends in
	// pg_stat_activity or create many tables, so nothing else disturbs them.
	tenants = map[string]*tenantInfo{}
)

// The admin console login of every test router.
const adminUser, adminPassword = "ops", "ops-secret-pw"

// tenantNames are the tenants provisioned on the cluster and configured in
// every router.
var tenantNames = []string{"acme", "globex", "initech", "umbrella"}

type tenantInfo struct {
	pgtest.Tenant
	// Login and LoginPassword are the client login pgbridge accepts for the
	// tenant ("acme_app"); distinct from the backend role (acme_user).
	Login         string
	LoginPassword string
}

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(c *pgtest.Cluster) int {
		cluster = c
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, name := range tenantNames {
			t, err := c.CreateTenant(ctx, name)
			if err != nil {
				fmt.Fprintf(os.Stderr, "provision tenant %s: %v\n", name, err)
				return 1
			}
			tenants[name] = &tenantInfo{Tenant: t, Login: name + "_app", LoginPassword: "pw-" + name + "-" + t.Password[:8]}
		}
		code := m.Run()
		if code != 0 {
			return code
		}
		// goleak.VerifyTestMain would call os.Exit itself, skipping the
		// cluster's shutdown; check the same thing here instead. Every
		// router, pool and client of the tests is closed by now.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines leaked by the tests: %v\n", err)
			return 1
		}
		return 0
	}))
}

// ---------------------------------------------------------------------------
// Router

// router is one pgbridge instance (pool + proxy) serving on a loopback port.
type router struct {
	t      *testing.T
	doc    map[string]any // the configuration as a map, for reloads
	cfg    *routing.Config
	pool   *pool.Manager
	srv    *proxy.Server
	addr   string
	port   int
	cancel context.CancelFunc
	done   chan error // receives Serve's result once
	result error
	exited bool
}

// baseConfig is the configuration every test router starts from: all
// tenants, the cluster as backend without TLS, short but generous timeouts.
func baseConfig() map[string]any {
	ts := map[string]any{}
	for _, name := range tenantNames {
		ti := tenants[name]
		ts[name] = map[string]any{
			"database":         ti.Database,
			"backend_user":     ti.User,
			"backend_password": ti.Password,
			"users": map[string]any{
				ti.Login: map[string]any{"password": ti.LoginPassword},
			},
		}
	}
	return map[string]any{
		"admin": map[string]any{
			"users": map[string]any{adminUser: map[string]any{"password": adminPassword}},
		},
		"listen": map[string]any{
			// Irrelevant: the test creates the listener and passes it to Serve.
			"address":          "127.0.0.1:6432",
			"login_timeout":    "10s",
			"shutdown_timeout": "10s",
		},
		"backend": map[string]any{
			"host":            cluster.Host,
			"port":            cluster.Port,
			"tls":             map[string]any{"mode": "disable"},
			"max_connections": 150,
			"connect_timeout": "15s",
		},
		"defaults": map[string]any{
			"pool_mode":         "transaction",
			"pool_size":         5,
			"pool_wait_timeout": "5s",
		},
		"tenants": ts,
	}
}

// merge deep-merges src into dst: nested maps merge, other values replace.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
			cp := map[string]any{}
			merge(cp, sm)
			dst[k] = cp
			continue
		}
		dst[k] = v
	}
}

// cfgMap is shorthand for building override maps.
type cfgMap = map[string]any

// tenantOverride returns overrides for one tenant's policy keys.
func tenantOverride(tenant string, kv cfgMap) cfgMap {
	return cfgMap{"tenants": cfgMap{tenant: maps.Clone(kv)}}
}

// startRouter writes a configuration (baseConfig deep-merged with each of
// overrides, in order), parses it with routing.Parse, and serves it on a
// fresh 127.0.0.1:0 listener. Cleanup stops the server (waiting for Serve to
// return) and closes the pool.
func startRouter(t *testing.T, overrides ...cfgMap) *router {
	t.Helper()
	return startRouterWith(t, nil, overrides...)
}

// startRouterWith is startRouter with extra proxy options.
func startRouterWith(t *testing.T, opts []proxy.Option, overrides ...cfgMap) *router {
	t.Helper()
	m := baseConfig()
	for _, o := range overrides {
		merge(m, o)
	}
	doc, err := yaml.Marshal(m)
	if err != nil {
		t.Fatalf("marshal config: %v", err)
	}
	cfg, err := routing.Parse(doc, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config rejected: %v\n%s", err, doc)
	}
	pm := pool.New(cfg)
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	srv, err := proxy.New(cfg, pm, append([]proxy.Option{proxy.WithLogger(log)}, opts...)...)
	if err != nil {
		pm.Close()
		t.Fatalf("proxy.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		pm.Close()
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &router{
		t: t, doc: m, cfg: cfg, pool: pm, srv: srv, cancel: cancel,
		addr: ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port,
		done: make(chan error, 1),
	}
	go func() { r.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("Serve returned %v", err)
		}
		pm.Close()
	})
	return r
}

// reload applies edit to the router's configuration map and reloads the
// proxy and the pool with the result, as cmd/pgbridge does.
func (r *router) reload(t *testing.T, edit func(m cfgMap)) {
	t.Helper()
	cfg := mustParseWith(t, r, edit)
	if err := r.srv.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	r.pool.Update(cfg)
	r.cfg = cfg
}

// mustParseWith applies edit to the router's configuration map and parses
// the result (the loader may refuse nothing here: routing checks files
// exist, not that they hold a certificate).
func mustParseWith(t *testing.T, r *router, edit func(m cfgMap)) *routing.Config {
	t.Helper()
	edit(r.doc)
	doc, err := yaml.Marshal(r.doc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := routing.Parse(doc, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("reloaded config rejected: %v", err)
	}
	return cfg
}

// stop cancels Serve's context and waits for Serve to return (it drains
// sessions first). It returns Serve's error; calling it again is a no-op.
func (r *router) stop() error {
	r.t.Helper()
	if r.exited {
		return r.result
	}
	r.cancel()
	select {
	case r.result = <-r.done:
	case <-time.After(30 * time.Second):
		r.t.Fatalf("Serve did not return within 30s of its context being cancelled")
	}
	r.exited = true
	return r.result
}

// dsn is a libpq key=value connection string for tenant's client login
// through the router. extra is appended (later keys win).
func (r *router) dsn(tenant string, extra ...string) string {
	ti := tenants[tenant]
	s := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=10",
		r.port, ti.Login, ti.LoginPassword, ti.Database)
	for _, e := range extra {
		s += " " + e
	}
	return s
}

// connConfig parses dsn for pgx. Unless dsn names another mode, queries
// with arguments use the extended protocol with the unnamed statement
// (QueryExecModeExec), so that tests of the core relay do not depend on
// how named prepared statements are carried between backends.
func connConfig(t *testing.T, dsn string) *pgx.ConnConfig {
	t.Helper()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse dsn: %v", err)
	}
	if !strings.Contains(dsn, "default_query_exec_mode=") {
		cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	return cc
}

// connectCfg opens a pgx connection and closes it at the end of the test.
func connectCfg(t *testing.T, cc *pgx.ConnConfig) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { closeConn(conn) })
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// connect opens a pgx connection through r as tenant's login; the test
// fails if it cannot.
func (r *router) connect(t *testing.T, tenant string, extra ...string) *pgx.Conn {
	t.Helper()
	conn, err := connectCfg(t, connConfig(t, r.dsn(tenant, extra...)))
	if err != nil {
		t.Fatalf("connect as %s through pgbridge: %v", tenant, err)
	}
	return conn
}

// eventuallyLogsIn waits until a login as tenant succeeds again (a freed
// connection slot is counted as free once the session has ended).
func (r *router) eventuallyLogsIn(t *testing.T, tenant string) {
	t.Helper()
	eventually(t, 5*time.Second, tenant+" can log in again", func() bool {
		conn, err := connectCfg(t, connConfig(t, r.dsn(tenant)))
		if err != nil {
			return false
		}
		closeConn(conn)
		return true
	})
}

// ---------------------------------------------------------------------------
// Small helpers

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// pgErr returns err's *pgconn.PgError, failing the test if there is none.
func pgErr(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("want a PostgreSQL error, got %T: %v", err, err)
	}
	return pe
}

// wantCode fails the test unless err carries SQLSTATE code.
func wantCode(t *testing.T, err error, code string) *pgconn.PgError {
	t.Helper()
	if err == nil {
		t.Fatalf("want SQLSTATE %s, got no error", code)
	}
	pe := pgErr(t, err)
	if pe.Code != code {
		t.Fatalf("want SQLSTATE %s, got %s (%s %s)", code, pe.Code, pe.Severity, pe.Message)
	}
	return pe
}

func queryString(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(testCtx(t, 15*time.Second), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func queryInt(t *testing.T, conn *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRow(testCtx(t, 15*time.Second), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(testCtx(t, 15*time.Second), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// superInt runs a single-value query as the cluster superuser, directly.
func superInt(t *testing.T, database, sql string, args ...any) int64 {
	t.Helper()
	n, err := cluster.QueryInt(testCtx(t, 15*time.Second), database, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clientEnv is the environment for psql/pgbench: no PG* variables of the
// surrounding process, only the password and a connect timeout.
func clientEnv(password string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=10")
}

// command builds a client command (psql, pgbench) bounded by ctx.
func command(ctx context.Context, password, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = clientEnv(password)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}
