package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var cluster *Cluster

func TestMain(m *testing.M) {
	os.Exit(Main(m, func(c *Cluster) int {
		cluster = c
		return m.Run()
	}))
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, dsn string) (*pgx.Conn, error) {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), dsn)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return conn, err
}

// dropTenants removes what CreateTenant made for each name, so that the
// tests that create tenants can run again (go test -count=2).
func dropTenants(t *testing.T, names ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, n := range names {
			for _, sql := range []string{
				"DROP DATABASE IF EXISTS tenant_" + n + " WITH (FORCE)",
				"DROP ROLE IF EXISTS " + n + "_user",
			} {
				if err := cluster.Exec(ctx, "postgres", sql); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			}
		}
	})
}

func TestTenants(t *testing.T) {
	c := cluster
	dropTenants(t, "acme", "globex", "initech")
	acme, err := c.CreateTenant(ctx(t), "acme")
	if err != nil {
		t.Fatal(err)
	}
	globex, err := c.CreateTenant(ctx(t), "globex")
	if err != nil {
		t.Fatal(err)
	}
	if acme.Database != "tenant_acme" || acme.User != "acme_user" || acme.Password == "" {
		t.Fatalf("unexpected tenant %+v", acme)
	}

	conn, err := connect(t, c.DSN(acme.User, acme.Password, acme.Database))
	if err != nil {
		t.Fatalf("acme_user -> tenant_acme: %v\n%s", err, c.LogTail(20))
	}
	var user, db string
	if err := conn.QueryRow(ctx(t), "select current_user, current_database()").Scan(&user, &db); err != nil {
		t.Fatal(err)
	}
	if user != "acme_user" || db != "tenant_acme" {
		t.Fatalf("got %s/%s", user, db)
	}
	for _, sql := range []string{
		"create table app_data.orders (id int primary key)",
		"insert into app_data.orders values (1), (2)",
		"create table public.notes (id int)", // PG15: needs the explicit GRANT CREATE on public
	} {
		if _, err := conn.Exec(ctx(t), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	n, err := c.QueryInt(ctx(t), "postgres", "select count(*) from pg_stat_activity where usename = $1", "acme_user")
	if err != nil || n != 1 {
		t.Fatalf("pg_stat_activity count for acme_user = %d, %v; want 1", n, err)
	}

	_, err = connect(t, c.DSN(acme.User, acme.Password, globex.Database))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "permission denied for database") {
		t.Fatalf("acme_user -> tenant_globex: want SQLSTATE 42501 permission denied, got %v", err)
	}
	if _, err := connect(t, c.DSN(acme.User, "wrong", acme.Database)); err == nil {
		t.Fatal("wrong password accepted")
	}

	if _, err := c.CreateTenant(ctx(t), "acme"); err == nil {
		t.Error("creating acme twice succeeded")
	}
	for _, bad := range []string{"", "Acme", "1acme", "acme-corp", "a; drop", strings.Repeat("a", 32)} {
		if _, err := c.CreateTenant(ctx(t), bad); err == nil {
			t.Errorf("CreateTenant(%q) succeeded", bad)
		}
	}

	odd, err := c.CreateTenantWithPassword(ctx(t), "initech", `it's a p\ss`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, c.DSN(odd.User, odd.Password, odd.Database)); err != nil {
		t.Fatalf("password with quote and backslash: %v", err)
	}
}

func TestStopStartRestartReload(t *testing.T) {
	c := cluster
	port := c.Port
	if err := c.StopServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx(t), "postgres", "select 1"); err == nil {
		t.Fatal("server still answers after StopServer")
	}
	if err := c.StopServer(); err != nil {
		t.Fatalf("second StopServer: %v", err)
	}
	if err := c.StartServer(); err != nil {
		t.Fatal(err)
	}
	if c.Port != port {
		t.Fatalf("port changed %d -> %d", port, c.Port)
	}
	if err := c.Exec(ctx(t), "postgres", "select 1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx(t), "postgres", "alter system set work_mem = '8MB'"); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	// Reload is asynchronous (SIGHUP); poll on fresh connections.
	var kb int64
	for range 50 {
		var err error
		if kb, err = c.QueryInt(ctx(t), "postgres", "select setting::bigint from pg_settings where name = 'work_mem'"); err != nil {
			t.Fatal(err)
		}
		if kb == 8192 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if kb != 8192 {
		t.Fatalf("work_mem after reload = %dkB", kb)
	}
	if !strings.Contains(c.LogTail(200), "received SIGHUP") {
		t.Errorf("log tail lacks the reload:\n%s", c.LogTail(20))
	}
}

func TestTLSAndClose(t *testing.T) {
	certs, err := GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(WithTLS(certs.CertFile, certs.KeyFile), WithConfig("max_connections", "20"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=verify-full sslrootcert=%s",
		c.Port, c.SuperUser, c.SuperPassword, certs.CAFile)
	conn, err := connect(t, dsn)
	if err != nil {
		t.Fatalf("verify-full: %v\n%s", err, c.LogTail(20))
	}
	var ssl bool
	if err := conn.QueryRow(ctx(t), "select ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("pg_stat_ssl.ssl = %v, %v", ssl, err)
	}
	if n, err := c.QueryInt(ctx(t), "postgres", "select current_setting('max_connections')::int"); err != nil || n != 20 {
		t.Fatalf("max_connections = %d, %v", n, err)
	}
	// With another CA as root the handshake must fail.
	other, err := GenerateCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, strings.Replace(dsn, certs.CAFile, other.CAFile, 1)); err == nil {
		t.Fatal("verify-full succeeded with the wrong root")
	}

	conn.Close(context.Background())
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.DataDir); !os.IsNotExist(err) {
		t.Fatalf("data dir %s still there after Close: %v", c.DataDir, err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.StartServer(); err == nil {
		t.Fatal("StartServer after Close succeeded")
	}
}

// A cluster whose test process died without Close is stopped and removed
// by the next Start; a live process's cluster is left alone.
func TestOrphanReaped(t *testing.T) {
	c, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pid := c.postmasterPID()
	if pid <= 0 {
		t.Fatal("no postmaster.pid")
	}

	reapOrphans() // its owner (this process) is alive
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Exec(ctx, "postgres", "select 1"); err != nil {
		t.Fatalf("a live process's cluster was reaped: %v", err)
	}

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	owner := fmt.Sprintf("%d 1\n", dead.Process.Pid)
	if err := os.WriteFile(filepath.Join(c.root, ownerFile), []byte(owner), 0o644); err != nil {
		t.Fatal(err)
	}
	reapOrphans()
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the orphaned postmaster %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(c.root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the orphan's directory is still there: %v", err)
	}
}

// running reports whether process pid exists and is not a zombie waiting
// for its parent.
func running(pid int) bool {
	f := procStat(pid)
	if len(f) == 0 {
		return syscall.Kill(pid, 0) == nil
	}
	return f[0] != "Z"
}
