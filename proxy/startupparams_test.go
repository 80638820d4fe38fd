package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// PostgreSQL reads the replication startup parameter with parse_bool
// ("database" aside): FALSE, f, no, n, of, off, 0 all ask for an ordinary
// connection, which it then serves; a value that is no boolean is FATAL
// 22023, not a replication connection.
func TestStartupReplicationFalseSpellings(t *testing.T) {
	r := startRouter(t)
	for _, v := range []string{"FALSE", "f", "No", "of", "OFF", "0"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := pgconn.Connect(ctx, r.dsn("acme", "replication="+v))
		if err != nil {
			cancel()
			t.Errorf("replication=%s (false for PostgreSQL): %v", v, err)
			continue
		}
		if _, err := c.Exec(ctx, "select 1").ReadAll(); err != nil {
			t.Errorf("replication=%s: query: %v", v, err)
		}
		c.Close(ctx)
		cancel()
	}
	for v, code := range map[string]string{"banana": "22023", "true": "0A000", "database": "0A000", "Yes": "0A000"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := pgconn.Connect(ctx, r.dsn("acme", "replication="+v))
		if err == nil {
			c.Close(ctx)
			t.Errorf("replication=%s: logged in", v)
		} else if pe := pgErr(t, err); pe.Code != code {
			t.Errorf("replication=%s: %s %s, want %s", v, pe.Code, pe.Message, code)
		}
		cancel()
	}
}

// PostgreSQL splits the options startup parameter at any isspace()
// character (pg_split_opts), newlines included, and drops a trailing lone
// backslash.
func TestStartupOptionsSplitLikePostgres(t *testing.T) {
	r := startRouter(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(r.dsn("acme"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["options"] = "-c application_name=nl\n-c\rwork_mem=2MB\f--lock-timeout=7s\v-c app.x=y\\"
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	defer c.Close(ctx)
	res, err := c.Exec(ctx, "select current_setting('application_name'), current_setting('work_mem'), current_setting('lock_timeout'), current_setting('app.x')").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, v := range res[0].Rows[0] {
		got = append(got, string(v))
	}
	want := []string{"nl", "2MB", "7s", "y"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("settings %q, want %q (as PostgreSQL splits options)", got, want)
		}
	}
}
