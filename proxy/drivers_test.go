package proxy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Drivers other than Go's, each running a program of checks
// (testdata/drivers) against a transaction-mode tenant whose pool holds
// fewer backends than the program opens connections, so that they share
// backends: prepared statements as each driver manages them, pipelines,
// transactions, errors, COPY. A program gets the tenant's login in the
// libpq environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD,
// PGDATABASE, PGSSLMODE), prints what it checks, exits 0 and prints "ok"
// as its last line when every check passed.
//
// `make driver-deps` (run by `make test`) installs the runtimes (Debian
// packages, npm); a missing one fails its driver, saying so.

type driver struct {
	name string
	// command returns the program's command line, run in
	// testdata/drivers, or what is missing to run it.
	command func() (argv []string, missing string)
}

var drivers = []driver{
	{"psycopg", func() ([]string, string) {
		py := "/usr/bin/python3"
		if err := exec.Command(py, "-c", "import psycopg").Run(); err != nil {
			return nil, "psycopg 3 for " + py + " (Debian: python3-psycopg)"
		}
		return []string{py, "psycopg_check.py"}, ""
	}},
	{"node-postgres", func() ([]string, string) {
		node, err := exec.LookPath("node")
		if err != nil {
			return nil, "node (Debian: nodejs)"
		}
		if _, err := os.Stat("testdata/drivers/node/node_modules/pg"); err != nil {
			return nil, "node-postgres (npm ci in proxy/testdata/drivers/node)"
		}
		return []string{node, "node/check.js"}, ""
	}},
	{"jdbc", func() ([]string, string) {
		java, err := exec.LookPath("java")
		if err != nil {
			return nil, "java (Debian: default-jre-headless)"
		}
		const jar = "/usr/share/java/postgresql.jar"
		if _, err := os.Stat(jar); err != nil {
			return nil, "the PostgreSQL JDBC driver " + jar + " (Debian: libpostgresql-jdbc-java)"
		}
		return []string{java, "-cp", jar, "jdbc/Check.java"}, ""
	}},
}

func TestDrivers(t *testing.T) {
	ti := tenants["globex"]
	port, user, password := cluster.Port, ti.User, ti.Password
	if os.Getenv("PGBRIDGE_DRIVERS_DIRECT") == "" {
		r := startRouter(t, tenantOverride("globex", cfgMap{"pool_size": 2}))
		port, user, password = r.port, ti.Login, ti.LoginPassword
	} else {
		// The checks' expectations are PostgreSQL's: they pass directly.
		t.Log("PGBRIDGE_DRIVERS_DIRECT: the drivers connect to PostgreSQL itself")
	}
	env := append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(port),
		"PGUSER="+user, "PGPASSWORD="+password, "PGDATABASE="+ti.Database, "PGSSLMODE=disable")
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			argv, missing := d.command()
			if missing != "" {
				t.Fatalf("missing %s: make driver-deps installs it", missing)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Dir = filepath.Join("testdata", "drivers")
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if err != nil || lines[len(lines)-1] != "ok" {
				t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
			}
			t.Logf("%s", out)
		})
	}
}
