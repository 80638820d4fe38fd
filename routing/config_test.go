package routing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pgbridge/pgbridge/internal/scram"
)

// exampleVerifier is a valid verifier (password "example-only"); it is also
// used in examples/full.yaml.
const exampleVerifier = "SCRAM-SHA-256$4096:cGdicmlkZ2UtZXhhbXBsZQ==$xH+nisojfEuQMyL3kY9IGEmbbMKvTIWE4LU1Sq6SjHA=:ap9W5K3eS8xjvM6IaHef7u+43QyfKIVxxVVj3szxUnA="

// minimal is the smallest valid configuration.
const minimal = `
backend:
  host: db.internal
tenants:
  acme:
    database: tenant_acme
    backend_user: acme_user
    backend_password: s3cret-backend
    users:
      acme_app: {password: app-pass}
`

func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func mustParse(t *testing.T, src string, env func(string) (string, bool)) *Config {
	t.Helper()
	if env == nil {
		env = noEnv
	}
	c, err := Parse([]byte(src), env)
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v\n--- config:\n%s", err, src)
	}
	return c
}

func parseErr(t *testing.T, src string, env func(string) (string, bool)) string {
	t.Helper()
	if env == nil {
		env = noEnv
	}
	c, err := Parse([]byte(src), env)
	if err == nil {
		t.Fatalf("Parse: want an error, got none (config %+v)\n--- config:\n%s", c, src)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("Parse: error %T is not a *ConfigError: %v", err, err)
	}
	return err.Error()
}

// wantErr checks that every want is a substring of one line of the error.
func wantErr(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		found := false
		for _, line := range strings.Split(got, "\n") {
			if strings.Contains(line, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("error does not contain %q; got:\n%s", w, got)
		}
	}
}

// tenantYAML builds a valid tenant block, with extra lines (already
// indented by 4) appended.
func tenantYAML(name, db, user, extra string) string {
	return "  " + name + ":\n" +
		"    database: " + db + "\n" +
		"    backend_user: " + name + "_user\n" +
		"    backend_password: pw-" + name + "\n" +
		"    users:\n" +
		"      " + user + ": {password: x}\n" + extra
}

func TestMinimalConfigDefaults(t *testing.T) {
	c := mustParse(t, minimal, nil)

	wantListen := Listen{
		Address:          "127.0.0.1:6432",
		TLS:              ListenTLS{Mode: ListenTLSDisable},
		LoginTimeout:     10 * time.Second,
		MaxStartupPacket: 10000,
		ShutdownTimeout:  30 * time.Second,
	}
	if !reflect.DeepEqual(c.Listen, wantListen) {
		t.Errorf("Listen = %+v, want %+v", c.Listen, wantListen)
	}
	wantBackend := Backend{
		Host:           "db.internal",
		Port:           5432,
		TLS:            BackendTLS{Mode: BackendTLSPrefer},
		MaxConnections: 100,
		ConnectTimeout: 5 * time.Second,
		ResumeTimeout:  30 * time.Second,
		IdleTimeout:    5 * time.Minute,
		MaxLifetime:    time.Hour,
	}
	if c.Backend != wantBackend {
		t.Errorf("Backend = %+v, want %+v", c.Backend, wantBackend)
	}
	if c.Log != (Log{Level: "info", Format: "auto"}) {
		t.Errorf("Log = %+v", c.Log)
	}
	if c.Admin.Address != "" || len(c.Admin.Users) != 0 {
		t.Errorf("Admin = %+v, want empty", c.Admin)
	}
	wantPolicy := Policy{
		PoolMode:             PoolTransaction,
		PoolSize:             10,
		MinPoolSize:          0,
		MaxClientConnections: 200,
		PoolWaitTimeout:      5 * time.Second,
		MaxMessageSize:       64 << 20,
	}
	if c.Defaults != wantPolicy {
		t.Errorf("Defaults = %+v, want %+v", c.Defaults, wantPolicy)
	}
	if len(c.Tenants) != 1 {
		t.Fatalf("Tenants = %v", c.Tenants)
	}
	acme := c.Tenants["acme"]
	if acme.Name != "acme" || acme.Database != "tenant_acme" || acme.BackendUser != "acme_user" || acme.BackendPassword != "s3cret-backend" {
		t.Errorf("tenant = %+v", acme)
	}
	if acme.Policy != wantPolicy {
		t.Errorf("tenant policy = %+v, want the defaults %+v", acme.Policy, wantPolicy)
	}

	tn, cred, ok := c.LookupUser("acme_app")
	if !ok || tn != acme {
		t.Fatalf("LookupUser(acme_app) = %v, %v", tn, ok)
	}
	if cred.Verifier.IsZero() || cred.Verifier.Iterations <= 0 || len(cred.Verifier.Salt) == 0 {
		t.Errorf("password was not turned into a verifier: %+v", cred.Verifier)
	}
	if _, _, ok := c.LookupUser("nobody"); ok {
		t.Error("LookupUser(nobody) found a tenant")
	}
	if _, _, ok := c.LookupUser("acme_user"); ok {
		t.Error("the backend role must not be a client login")
	}
	for db, want := range map[string]bool{"tenant_acme": true, "acme": true, "postgres": false, "": false, "pgbridge": false} {
		if got := c.TenantForDatabase(acme, db); got != want {
			t.Errorf("TenantForDatabase(acme, %q) = %v, want %v", db, got, want)
		}
	}
	if c.TenantForDatabase(nil, "acme") {
		t.Error("TenantForDatabase(nil) = true")
	}
}

func TestPolicyInheritance(t *testing.T) {
	src := `
backend:
  host: db
  max_connections: 50
  max_active_transactions: 6
defaults:
  pool_mode: session
  pool_size: 8
  min_pool_size: 1
  max_client_connections: 0
  pool_wait_timeout: 2s
  statement_timeout: 30s
  idle_in_transaction_timeout: 1m
tenants:
` + tenantYAML("acme", "db_acme", "a", `    pool_size: 20
    min_pool_size: 0
    statement_timeout: 0s
`) + tenantYAML("globex", "db_globex", "g", `    pool_mode: transaction
    max_client_connections: 7
    pool_wait_timeout: 250ms
`) + tenantYAML("initech", "db_initech", "i", "")
	c := mustParse(t, src, nil)
	if c.Backend.MaxActiveTransactions != 6 {
		t.Errorf("backend.max_active_transactions = %d, want 6", c.Backend.MaxActiveTransactions)
	}

	defaults := Policy{
		PoolMode: PoolSession, PoolSize: 8, MinPoolSize: 1, MaxClientConnections: 0,
		PoolWaitTimeout: 2 * time.Second, StatementTimeout: 30 * time.Second, IdleInTransactionTimeout: time.Minute,
		MaxMessageSize: 64 << 20,
	}
	if c.Defaults != defaults {
		t.Errorf("Defaults = %+v, want %+v", c.Defaults, defaults)
	}
	acme := defaults
	acme.PoolSize, acme.MinPoolSize, acme.StatementTimeout = 20, 0, 0
	globex := defaults
	globex.PoolMode, globex.MaxClientConnections, globex.PoolWaitTimeout = PoolTransaction, 7, 250*time.Millisecond
	for name, want := range map[string]Policy{"acme": acme, "globex": globex, "initech": defaults} {
		if got := c.Tenants[name].Policy; got != want {
			t.Errorf("%s policy = %+v, want %+v", name, got, want)
		}
	}
	for user, tenant := range map[string]string{"a": "acme", "g": "globex", "i": "initech"} {
		if tn, _, ok := c.LookupUser(user); !ok || tn.Name != tenant {
			t.Errorf("LookupUser(%s) = %v, %v; want tenant %s", user, tn, ok, tenant)
		}
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"login_timeout zero", "listen: {login_timeout: 0s}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"listen.login_timeout: must be more than 0"}},
		{"statement_timeout beyond PostgreSQL", "backend: {host: db}\ndefaults: {statement_timeout: 600h}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"defaults.statement_timeout: 600h0m0s is more than PostgreSQL accepts"}},
		{"idle_in_transaction_timeout beyond PostgreSQL", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", "    idle_in_transaction_timeout: 300h\n"),
			[]string{"tenants.acme.idle_in_transaction_timeout: 300h0m0s is too long"}},
		{"pool_size zero in defaults", "backend: {host: db}\ndefaults: {pool_size: 0}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"defaults.pool_size: 0 must be at least 1 (line 2)"}},
		{"pool_size zero in tenant", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", "    pool_size: 0\n"),
			[]string{"tenants.acme.pool_size: 0 must be at least 1 (line 9)"}},
		{"negative min_pool_size", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", "    min_pool_size: -1\n"),
			[]string{"tenants.acme.min_pool_size: -1 must not be negative"}},
		{"min_pool_size above pool_size", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", "    pool_size: 3\n    min_pool_size: 5\n"),
			[]string{"tenants.acme.min_pool_size: min_pool_size 5 is larger than pool_size 3"}},
		{"min_pool_size above inherited pool_size", "backend: {host: db}\ndefaults: {pool_size: 4}\ntenants:\n" + tenantYAML("acme", "d", "u", "    min_pool_size: 6\n"),
			[]string{"tenants.acme.min_pool_size: min_pool_size 6 is larger than pool_size 4"}},
		{"defaults min_pool_size above pool_size", "backend: {host: db}\ndefaults: {pool_size: 2, min_pool_size: 3}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"defaults.min_pool_size: min_pool_size 3 is larger than pool_size 2"}},
		{"tenant pool_size above budget", "backend: {host: db, max_connections: 40}\ntenants:\n" + tenantYAML("acme", "d", "u", "    pool_size: 50\n"),
			[]string{"tenants.acme.pool_size: 50 is larger than the whole backend budget backend.max_connections=40"}},
		{"defaults pool_size above budget", "backend: {host: db, max_connections: 5}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"defaults.pool_size: 10 is larger than the whole backend budget backend.max_connections=5"}},
		{"min_pool_size sum above budget", "backend: {host: db, max_connections: 10}\ndefaults: {pool_size: 6, min_pool_size: 6}\ntenants:\n" + tenantYAML("acme", "d1", "u1", "") + tenantYAML("globex", "d2", "u2", ""),
			[]string{"backend.max_connections: the tenants' min_pool_size values add up to 12, more than backend.max_connections=10"}},
		{"reserved_connections above pool_size", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", "    pool_size: 3\n    reserved_connections: 4\n"),
			[]string{"tenants.acme.reserved_connections: reserved_connections 4 is larger than pool_size 3"}},
		{"reserved_connections sum above budget", "backend: {host: db, max_connections: 10}\ndefaults: {pool_size: 6, reserved_connections: 6}\ntenants:\n" + tenantYAML("acme", "d1", "u1", "") + tenantYAML("globex", "d2", "u2", ""),
			[]string{"backend.max_connections: the tenants' reserved_connections values add up to 12, more than backend.max_connections=10"}},
		{"max_message_size too small", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", "    max_message_size: 10\n"),
			[]string{"tenants.acme.max_message_size: 10 must be between 1024 and 1073741824"}},
		{"iam with a backend password", "backend: {host: db, aws_region: eu-west-1, tls: {mode: require}}\ntenants:\n" + tenantYAML("acme", "d", "u", "    backend_auth: iam\n"),
			[]string{"tenants.acme.backend_password: not used with backend_auth: iam; remove it"}},
		{"iam without region or TLS", "backend: {host: db, tls: {mode: disable}}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_auth: iam\n    users: {u: {password: x}}\n",
			[]string{"backend.aws_region: required when a tenant uses backend_auth: iam", "backend.tls.mode: IAM authentication needs TLS to the backend; use require, verify-ca or verify-full"}},
		{"unknown backend_auth", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", "    backend_auth: kerberos\n"),
			[]string{"tenants.acme.backend_auth: \"kerberos\" is not one of password, iam"}},
		{"max_connections zero", "backend: {host: db, max_connections: 0}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.max_connections: 0 must be at least 1"}},
		{"max_active_transactions negative", "backend: {host: db, max_active_transactions: -1}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.max_active_transactions: -1 must not be negative"}},
		{"duplicate user", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d1", "app", "") + tenantYAML("globex", "d2", "app", ""),
			[]string{"tenants.globex.users.app: user name already belongs to tenant acme"}},
		{"duplicate database", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "shared", "u1", "") + tenantYAML("globex", "shared", "u2", ""),
			[]string{"tenants.globex.database: database shared already belongs to tenant acme"}},
		{"port too large", "backend: {host: db, port: 70000}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.port: 70000 must be between 1 and 65535"}},
		{"port zero", "backend: {host: db, port: 0}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.port: 0 must be between 1 and 65535"}},
		{"port not a number", "backend: {host: db, port: five}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{`backend.port: "five" is not a whole number`}},
		{"negative duration", "backend: {host: db, connect_timeout: -1s}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.connect_timeout: -1s must not be negative"}},
		{"duration without unit", "backend: {host: db, idle_timeout: 5}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{`backend.idle_timeout: "5" is not a duration (write it with a unit: 500ms, 5s, 1m, 1h)`}},
		{"bad pool_mode", "backend: {host: db}\ndefaults: {pool_mode: statement}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{`defaults.pool_mode: "statement" is not one of transaction, session`}},
		{"bad tenant pool_mode", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", "    pool_mode: Session\n"),
			[]string{`tenants.acme.pool_mode: "Session" is not one of transaction, session`}},
		{"empty listen address", "listen: {address: ''}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"listen.address: must not be empty"}},
		{"listen address without port", "listen: {address: localhost}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{`listen.address: "localhost" is not host:port`}},
		{"missing backend host", "backend: {port: 5433}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.host: required"}},
		{"missing backend section", "tenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.host: required"}},
		{"empty backend host", "backend: {host: ''}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.host: must not be empty"}},
		{"reserved tenant name", "backend: {host: db}\ntenants:\n" + tenantYAML("pgbridge", "d", "u", ""),
			[]string{"tenants.pgbridge: the name pgbridge is reserved for the admin console"}},
		{"reserved database", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "pgbridge", "u", ""),
			[]string{"tenants.acme.database: the database name pgbridge is reserved for the admin console"}},
		{"invalid tenant name", "backend: {host: db}\ntenants:\n" + tenantYAML("-acme", "d", "u", ""),
			[]string{"tenants.-acme: invalid tenant name"}},
		{"tenant name too long", "backend: {host: db}\ntenants:\n" + tenantYAML(strings.Repeat("a", 64), "d", "u", ""),
			[]string{"tenants." + strings.Repeat("a", 64) + ": invalid tenant name"}},
		{"no tenants", "backend: {host: db}\n", []string{"tenants: at least one tenant is required"}},
		{"missing database and backend user", "backend: {host: db}\ntenants:\n  acme:\n    backend_password: x\n    users: {u: {password: x}}\n",
			[]string{"tenants.acme.database: required", "tenants.acme.backend_user: required"}},
		{"missing backend credentials", "backend: {host: db}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    users: {u: {password: x}}\n",
			[]string{"tenants.acme.backend_password: missing backend credentials: set backend_password or backend_password_file"}},
		{"no users", "backend: {host: db}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_password: x\n",
			[]string{"tenants.acme.users: at least one client login is required"}},
		{"empty tenant", "backend: {host: db}\ntenants:\n  acme:\n",
			[]string{"tenants.acme.database: required", "tenants.acme.backend_user: required", "tenants.acme.backend_password: missing backend credentials", "tenants.acme.users: at least one client login is required"}},
		{"credential with nothing", "backend: {host: db}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_password: x\n    users: {app: {}}\n",
			[]string{"tenants.acme.users.app: no credential: set one of scram, scram_file, password, password_file"}},
		{"credential with two forms", "backend: {host: db}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_password: x\n    users: {app: {password: x, scram: y}}\n",
			[]string{"tenants.acme.users.app: set exactly one of scram, scram_file, password, password_file (found scram, password)"}},
		{"empty user name", "backend: {host: db}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_password: x\n    users: {'': {password: x}}\n",
			[]string{`tenants.acme.users."": a user name must not be empty`}},
		{"user name with NUL", "backend: {host: db}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_password: x\n    users: {\"a\\0b\": {password: x}}\n",
			[]string{`tenants.acme.users."a\x00b": a user name must not contain a NUL byte`}},
		{"bad scram verifier", "backend: {host: db}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_password: x\n    users: {app: {scram: 'md5abcdef'}}\n",
			[]string{"tenants.acme.users.app.scram: not a valid SCRAM verifier ("}},
		{"empty password", "backend: {host: db}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_password: x\n    users: {app: {password: ''}}\n",
			[]string{"tenants.acme.users.app.password: is empty"}},
		{"empty backend password", "backend: {host: db}\ntenants:\n" + strings.Replace(tenantYAML("acme", "d", "u", ""), "pw-acme", "''", 1),
			[]string{"tenants.acme.backend_password: is empty"}},
		{"verify-full without CA", "backend: {host: db, tls: {mode: verify-full}}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.tls.ca_file: required when mode is verify-full"}},
		{"verify-ca without CA", "backend: {host: db, tls: {mode: verify-ca}}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.tls.ca_file: required when mode is verify-ca"}},
		{"missing CA file", "backend: {host: db, tls: {mode: verify-full, ca_file: /nonexistent/ca.pem}}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.tls.ca_file: cannot read: open /nonexistent/ca.pem: no such file or directory"}},
		{"bad backend tls mode", "backend: {host: db, tls: {mode: allow}}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{`backend.tls.mode: "allow" is not one of disable, prefer, require, verify-ca, verify-full`}},
		{"listen tls require without certificate", "listen: {tls: {mode: require}}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"listen.tls.mode: require needs cert_file and key_file"}},
		{"listen tls allow without certificate", "listen: {tls: {mode: allow}}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"listen.tls.mode: allow needs cert_file and key_file"}},
		{"listen cert without key", "listen: {tls: {cert_file: /x.crt}}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"listen.tls.key_file: required when cert_file is set"}},
		{"listen key without cert", "listen: {tls: {key_file: /x.key}}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"listen.tls.cert_file: required when key_file is set"}},
		{"listen cert files missing", "listen: {tls: {cert_file: /nonexistent/x.crt, key_file: /nonexistent/x.key}}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"listen.tls.cert_file: cannot load the certificate and key: open /nonexistent/x.crt: no such file or directory"}},
		{"bad listen tls mode", "listen: {tls: {mode: verify-full}}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{`listen.tls.mode: "verify-full" is not one of disable, allow, require`}},
		{"bad log level", "log: {level: verbose, format: xml}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{`log.level: "verbose" is not one of debug, info, warn, error`, `log.format: "xml" is not one of json, console, auto`}},
		{"zero max_startup_packet", "listen: {max_startup_packet: 0}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"listen.max_startup_packet: 0 must be at least 1"}},
		{"negative rate", "backend: {host: db}\ndefaults: {query_rate: -1}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"defaults.query_rate: -1 must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, parseErr(t, tt.src, nil), tt.want...)
		})
	}
}

func TestAllErrorsReportedSortedByPath(t *testing.T) {
	src := `
tenants:
  zeta:
    database: dz
    backend_user: u
    backend_password: x
    users: {z: {password: x}}
    pool_size: 0
  acme:
    database: da
    backend_user: u
    backend_password: x
    users: {a: {password: x}}
    pool_mode: bogus
backend:
  port: 0
listen:
  address: nowhere
`
	got := parseErr(t, src, nil)
	want := strings.Join([]string{
		"backend.host: required (line 15)",
		"backend.port: 0 must be between 1 and 65535 (line 16)",
		`listen.address: "nowhere" is not host:port (line 18)`,
		`tenants.acme.pool_mode: "bogus" is not one of transaction, session (line 14)`,
		"tenants.zeta.pool_size: 0 must be at least 1 (line 8)",
	}, "\n")
	if got != want {
		t.Errorf("error:\n%s\nwant:\n%s", got, want)
	}
	var ce *ConfigError
	_, err := Parse([]byte(src), noEnv)
	if !errors.As(err, &ce) || len(ce.Problems) != 5 || ce.Problems[0].Path != "backend.host" || ce.Problems[0].Line != 15 {
		t.Errorf("ConfigError problems = %+v", ce)
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"top level", "listne: {address: ':1'}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"listne: unknown key, did you mean listen? (line 1)"}},
		{"second level", "backend: {host: db, sslmode: require}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.sslmode: unknown key (line 1)"}},
		{"third level", "backend: {host: db, tls: {mode: require, cafile: x}}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.tls.cafile: unknown key, did you mean ca_file? (line 1)"}},
		{"tenant key", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", "    pool_sise: 5\n"),
			[]string{"tenants.acme.pool_sise: unknown key, did you mean pool_size? (line 9)"}},
		{"credential key", "backend: {host: db}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_password: x\n    users:\n      app: {scram_fiel: /x}\n",
			[]string{"tenants.acme.users.app.scram_fiel: unknown key, did you mean scram_file? (line 8)"}},
		{"defaults key", "backend: {host: db}\ndefaults:\n  pool_size: 3\n  max_pool_size: 5\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"defaults.max_pool_size: unknown key, did you mean min_pool_size? (line 4)"}},
		{"admin key", "admin: {adress: x}\nbackend: {host: db}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"admin.adress: unknown key, did you mean address? (line 1)"}},
		{"several, with other errors", "backend: {host: db, prot: 1}\nlog: {levle: info}\ntenants:\n" + tenantYAML("acme", "d", "u", "    databse: x\n    pool_size: 0\n"),
			[]string{"backend.prot: unknown key, did you mean port? (line 1)", "log.levle: unknown key, did you mean level? (line 2)",
				"tenants.acme.databse: unknown key, did you mean database? (line 10)", "tenants.acme.pool_size: 0 must be at least 1 (line 11)"}},
		{"key set twice", "backend:\n  host: a\n  host: b\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.host: key is set twice (first on line 2) (line 3)"}},
		{"tenant set twice", "backend: {host: db}\ntenants:\n" + tenantYAML("acme", "d1", "u1", "") + tenantYAML("acme", "d2", "u2", ""),
			[]string{"tenants.acme: key is set twice (first on line 3) (line 9)"}},
		{"list where a value belongs", "backend: {host: db, port: [1, 2]}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend.port: expected a single value, found a list (line 1)"}},
		{"value where a mapping belongs", "backend: db.internal\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			[]string{"backend: expected a mapping of keys, found a single value (line 1)"}},
		{"tenants as a list", "backend: {host: db}\ntenants:\n  - acme\n",
			[]string{"tenants: expected a mapping of keys, found a list (line 3)"}},
		{"null tenant name", "backend: {host: db}\ntenants:\n  ~: {}\n",
			[]string{"tenants: a key must not be empty (null) (line 3)"}},
		{"list as a key", "backend: {host: db}\ntenants:\n  [a]: {}\n",
			[]string{"tenants: a key must be a plain value, found a list (line 3)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, parseErr(t, tt.src, nil), tt.want...)
		})
	}
}

func TestDocumentErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"empty", "", "the configuration is empty"},
		{"only comments", "# nothing here\n", "the configuration is empty"},
		{"null document", "---\n", "the configuration is empty"},
		{"two documents", minimal + "---\n" + minimal, "the file holds more than one YAML document; a configuration is exactly one"},
		{"syntax error", "backend:\n  host: [db\n", "invalid YAML: "},
		{"top level list", "- a\n- b\n", "the top level must be a mapping of keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, parseErr(t, tt.src, nil), tt.want)
		})
	}
}

func TestYAMLAnchorsAndMerge(t *testing.T) {
	src := `
backend: {host: db}
defaults: &limits
  pool_size: 4
tenants:
  acme:
    <<: *limits
    database: d
    backend_user: u
    backend_password: x
    users: {a: {password: x}}
`
	c := mustParse(t, src, nil)
	if c.Tenants["acme"].Policy.PoolSize != 4 {
		t.Errorf("merged pool_size = %d", c.Tenants["acme"].Policy.PoolSize)
	}
	bad := strings.Replace(src, "pool_size: 4", "pool_size: 4\n  pool_sise: 5", 1)
	wantErr(t, parseErr(t, bad, nil), "defaults.pool_sise: unknown key, did you mean pool_size?", "tenants.acme.pool_sise: unknown key, did you mean pool_size?")
}

// yaml.v3 panics on a merge key next to a key that is itself a list or a
// mapping; the file must be refused, not crash the router reloading it.
func TestMergeWithUnhashableKeyIsAnError(t *testing.T) {
	src := "backend: {host: db}\ntenants:\n  acme:\n    <<: {pool_size: 5}\n    [database]: d\n"
	msg := parseErr(t, src, nil)
	if !strings.Contains(msg, "tenants.acme") {
		t.Fatalf("error %q, want one naming tenants.acme", msg)
	}
	t.Log(msg)
}

func TestAliasBombIsBounded(t *testing.T) {
	// Each level merges the previous one ten times: 10^11 mappings if
	// walked naively.
	var b strings.Builder
	b.WriteString("x0: &a0 {pool_size: 1}\n")
	for i := 1; i < 12; i++ {
		fmt.Fprintf(&b, "x%d: &a%d {<<: [", i, i)
		for j := 0; j < 10; j++ {
			fmt.Fprintf(&b, "*a%d,", i-1)
		}
		b.WriteString("]}\n")
	}
	b.WriteString("backend: {host: db}\ndefaults: *a11\ntenants:\n" + tenantYAML("acme", "d", "u", ""))
	start := time.Now()
	got := parseErr(t, b.String(), nil)
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v", d)
	}
	wantErr(t, got, "x0: unknown key (line 1)", "document is too large or uses too many aliases")
}

func TestEnvExpansion(t *testing.T) {
	env := envOf(map[string]string{
		"HOST":      "aurora.example",
		"PORT":      "6543",
		"POOL":      "12",
		"WAIT":      "750ms",
		"RATE":      "0",
		"PW":        "p@ss$${word}",
		"INJECT":    "x\nfoo: bar",
		"EMPTY":     "",
		"LEVEL":     "debug",
		"BADNUMBER": "twelve",
	})
	src := `
backend:
  host: ${HOST}
  port: ${PORT}
  max_connections: "1${POOL}"
log: {level: "${LEVEL}"}
defaults:
  pool_size: ${POOL}
  pool_wait_timeout: ${WAIT}
  query_rate: ${RATE}
tenants:
  acme:
    database: tenant_${HOST}
    backend_user: "$$USER-$${HOST}-$HOST"
    backend_password: ${PW}
    users:
      app: {password: "${INJECT}"}
`
	c := mustParse(t, src, env)
	if c.Backend.Host != "aurora.example" || c.Backend.Port != 6543 || c.Backend.MaxConnections != 112 {
		t.Errorf("backend = %+v", c.Backend)
	}
	if c.Log.Level != "debug" {
		t.Errorf("log level = %q", c.Log.Level)
	}
	if c.Defaults.PoolSize != 12 || c.Defaults.PoolWaitTimeout != 750*time.Millisecond {
		t.Errorf("defaults = %+v", c.Defaults)
	}
	acme := c.Tenants["acme"]
	if acme.Database != "tenant_aurora.example" {
		t.Errorf("database = %q", acme.Database)
	}
	if acme.BackendUser != "$USER-${HOST}-$HOST" {
		t.Errorf("$$ handling: backend_user = %q", acme.BackendUser)
	}
	if acme.BackendPassword != "p@ss$${word}" {
		t.Errorf("a variable's value must not be expanded again: %q", acme.BackendPassword)
	}
	if len(acme.Users) != 1 {
		t.Errorf("an env value must not inject YAML: users = %v", acme.Users)
	}

	errTests := []struct{ name, src, want string }{
		{"unset variable", strings.Replace(minimal, "s3cret-backend", "${ACME_PW}", 1),
			"tenants.acme.backend_password: environment variable ACME_PW is not set (line 8)"},
		{"unset variable in a number", "backend: {host: db, port: '${NOPE}'}\ntenants:\n" + tenantYAML("acme", "d", "u", ""),
			"backend.port: environment variable NOPE is not set (line 1)"},
		{"empty variable for a required key", strings.Replace(minimal, "db.internal", "${EMPTY}", 1),
			"backend.host: must not be empty"},
		{"invalid number from env", strings.Replace(minimal, "host: db.internal", "host: db.internal\n  max_connections: ${BADNUMBER}", 1),
			`backend.max_connections: "twelve" is not a whole number`},
		{"invalid duration from env", strings.Replace(minimal, "host: db.internal", "host: db.internal\n  idle_timeout: ${POOL}", 1),
			`backend.idle_timeout: "12" is not a duration`},
		{"unterminated", strings.Replace(minimal, "s3cret-backend", "${ACME", 1),
			"tenants.acme.backend_password: unterminated ${ (a literal $ is written $$)"},
		{"bad name", strings.Replace(minimal, "s3cret-backend", "${1X}", 1),
			`tenants.acme.backend_password: invalid environment variable name "1X" in ${...}`},
		{"default syntax is not supported", strings.Replace(minimal, "s3cret-backend", "${PW:-x}", 1),
			`tenants.acme.backend_password: invalid environment variable name "PW:-x" in ${...}`},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, parseErr(t, tt.src, env), tt.want)
		})
	}
}

func TestExpandEnv(t *testing.T) {
	env := envOf(map[string]string{"A": "1", "B": "${A}"})
	for in, want := range map[string]string{
		"":                "",
		"plain":           "plain",
		"${A}":            "1",
		"x${A}y${A}":      "x1y1",
		"$$":              "$",
		"$$$$":            "$$",
		"$${A}":           "${A}",
		"$$${A}":          "$1",
		"${B}":            "${A}",
		"a$b":             "a$b",
		"trailing$":       "trailing$",
		"SCRAM-SHA-256$4": "SCRAM-SHA-256$4",
	} {
		got, err := expandEnv(in, env)
		if err != nil || got != want {
			t.Errorf("expandEnv(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"${C}": "environment variable C is not set",
		"${}":  `invalid environment variable name "" in ${...}`,
		"${A":  "unterminated ${",
	} {
		if _, err := expandEnv(in, env); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("expandEnv(%q) error = %v; want %q", in, err, want)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	gen, err := scram.GenerateVerifier("from-a-file")
	if err != nil {
		t.Fatal(err)
	}
	bpw := writeFile(t, dir, "backend.pw", "backend-secret\n")
	scr := writeFile(t, dir, "app.scram", gen.String()+"\r\n")
	cpw := writeFile(t, dir, "report.pw", "report-pass \n\n")
	empty := writeFile(t, dir, "empty", "\n")
	src := `
backend: {host: db}
tenants:
  acme:
    database: d
    backend_user: u
    backend_password_file: ` + bpw + `
    users:
      app: {scram_file: ` + scr + `}
      report: {password_file: "` + cpw + `"}
`
	c := mustParse(t, src, nil)
	acme := c.Tenants["acme"]
	if acme.BackendPassword != "backend-secret" {
		t.Errorf("backend password = %q", acme.BackendPassword)
	}
	if got := acme.Users["app"].Verifier.String(); got != gen.String() {
		t.Errorf("scram_file verifier = %q, want %q", got, gen.String())
	}
	if acme.Users["report"].Verifier.IsZero() {
		t.Error("password_file did not give a verifier")
	}

	// The file name itself may come from the environment.
	env := envOf(map[string]string{"SECRETS": dir})
	c = mustParse(t, strings.Replace(src, bpw, "${SECRETS}/backend.pw", 1), env)
	if c.Tenants["acme"].BackendPassword != "backend-secret" {
		t.Errorf("backend password via ${SECRETS} = %q", c.Tenants["acme"].BackendPassword)
	}

	errTests := []struct{ name, src, want string }{
		{"both backend_password forms", strings.Replace(src, "    backend_password_file:", "    backend_password: x\n    backend_password_file:", 1),
			"tenants.acme.backend_password_file: set either backend_password or backend_password_file, not both"},
		{"both scram forms", strings.Replace(src, "{scram_file:", "{scram: x, scram_file:", 1),
			"tenants.acme.users.app: set exactly one of scram, scram_file, password, password_file (found scram, scram_file)"},
		{"both password forms", strings.Replace(src, "{password_file:", "{password: x, password_file:", 1),
			"tenants.acme.users.report: set exactly one of scram, scram_file, password, password_file (found password, password_file)"},
		{"missing file", strings.Replace(src, bpw, filepath.Join(dir, "nope"), 1),
			"tenants.acme.backend_password_file: cannot read secret file: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"empty file", strings.Replace(src, cpw, empty, 1),
			"tenants.acme.users.report.password_file: secret file " + empty + " is empty"},
		{"file with a bad verifier", strings.Replace(src, scr, bpw, 1),
			"tenants.acme.users.app.scram_file: not a valid SCRAM verifier ("},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErr(t, tt.src, nil)
			wantErr(t, got, tt.want)
			if strings.Contains(got, "backend-secret") {
				t.Errorf("error shows a secret: %s", got)
			}
		})
	}
}

func TestLoadResolvesRelativeFilesAgainstConfigDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "backend.pw", "relative-secret\n")
	cfg := writeFile(t, dir, "pgbridge.yaml", strings.Replace(minimal, "backend_password: s3cret-backend", "backend_password_file: backend.pw", 1))
	c, err := Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Tenants["acme"].BackendPassword != "relative-secret" {
		t.Errorf("backend password = %q", c.Tenants["acme"].BackendPassword)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "read configuration: open ") {
		t.Errorf("Load(missing) error = %v", err)
	}
}

// Every key of the contract is built: zero and non-zero values load.
func TestGuardrailKeysAccepted(t *testing.T) {
	// Zero values.
	ok := `
listen: {max_client_connections: 0}
admin: {address: "", users: {}}
log: {queries: false}
backend: {host: db}
defaults: {max_statement_timeout: 0s, client_idle_timeout: 0s, query_rate: 0, query_burst: 0, connection_rate: 0.0}
tenants:
` + tenantYAML("acme", "d", "u", "    max_statement_timeout: 0s\n    client_idle_timeout: '0'\n    query_rate: 0\n    query_burst: 0\n    connection_rate: 0\n")
	mustParse(t, ok, nil)

	// Real values.
	set := mustParse(t, "backend: {host: db}\nadmin: {address: '127.0.0.1:9632'}\nlog: {queries: true}\ntenants:\n"+
		tenantYAML("acme", "d", "u", "    max_statement_timeout: 5m\n    client_idle_timeout: 1m\n    query_rate: 100\n    query_burst: 10\n    connection_rate: 2.5\n"), nil)
	if p := set.Tenants["acme"].Policy; p.MaxStatementTimeout != 5*time.Minute || p.ClientIdleTimeout != time.Minute ||
		p.QueryRate != 100 || p.QueryBurst != 10 || p.ConnectionRate != 2.5 || !set.Log.Queries || set.Admin.Address != "127.0.0.1:9632" {
		t.Errorf("parsed %+v", set)
	}
	iam := mustParse(t, "backend: {host: db, aws_region: eu-west-1, tls: {mode: require}}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_auth: iam\n    users: {u: {password: x}}\n", nil)
	if a := iam.Tenants["acme"]; a.BackendAuth != BackendAuthIAM || a.BackendPassword != "" || iam.Backend.AWSRegion != "eu-west-1" {
		t.Errorf("iam tenant = %+v, region %q", a, iam.Backend.AWSRegion)
	}
	// check-config says what the router will do: the IAM login, the
	// region, and the token bucket's size when query_burst is left 0.
	burst := mustParse(t, "backend: {host: db, aws_region: eu-west-1, max_active_transactions: 8, tls: {mode: require}}\ntenants:\n  acme:\n    database: d\n    backend_user: u\n    backend_auth: iam\n    users: {u: {password: x}}\n    query_rate: 12.5\n", nil)
	for _, want := range []string{"u (RDS IAM token per connection)", "aws_region eu-west-1", "max_active_transactions 8", "query_burst 13 (default: -)"} {
		if out := burst.Explain(); !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
			t.Errorf("Explain lacks %q:\n%s", want, out)
		}
	}
	mustParse(t, "backend: {host: db}\ndefaults: {max_client_connections: 5, min_pool_size: 1}\ntenants:\n"+
		tenantYAML("acme", "d", "u", "    max_client_connections: 3\n    min_pool_size: 2\n"), nil)
}

func TestExplainHasNoSecrets(t *testing.T) {
	dir := t.TempDir()
	bpwFile := writeFile(t, dir, "globex.pw", "globex-backend-secret\n")
	src := `
backend: {host: aurora.internal, max_connections: 30}
defaults: {pool_size: 5, statement_timeout: 30s}
tenants:
  acme:
    database: tenant_acme
    backend_user: acme_user
    backend_password: ${ACME_PW}
    users:
      acme_app: {scram: "` + exampleVerifier + `"}
      acme_cli: {password: "client-password-123"}
    pool_size: 20
  globex:
    database: tenant_globex
    backend_user: globex_user
    backend_password_file: ` + bpwFile + `
    users:
      globex_app: {password: hunter2hunter2}
    pool_mode: session
`
	c := mustParse(t, src, envOf(map[string]string{"ACME_PW": "acme-backend-secret"}))
	out := c.Explain()
	secrets := []string{"acme-backend-secret", "globex-backend-secret", "client-password-123", "hunter2hunter2", exampleVerifier, "SCRAM-SHA-256"}
	for _, tn := range c.Tenants {
		for _, cr := range tn.Users {
			secrets = append(secrets, cr.Verifier.String())
		}
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("Explain shows a secret %q:\n%s", s, out)
		}
	}
	for _, want := range []string{
		"listen", "127.0.0.1:6432",
		"aurora.internal:5432",
		"30 backend connections (backend.max_connections) shared by 2 tenant(s)",
		"tenant acme", "tenant_acme", "acme_user (password set)", "acme_app, acme_cli",
		"tenant globex", "globex_app",
		"20  (default: 5)",
		"session  (default: transaction)",
		"statement_timeout", "30s",
		"idle_in_transaction_timeout  off",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Explain lacks %q:\n%s", want, out)
		}
	}
	// Settings: dotted keys, no secrets, tenants in order.
	settings := map[string]string{}
	var keys []string
	for _, st := range c.Settings() {
		settings[st.Key] = st.Value
		keys = append(keys, st.Key)
		for _, s := range secrets {
			if strings.Contains(st.Value, s) {
				t.Errorf("Settings shows a secret in %s", st.Key)
			}
		}
	}
	if settings["backend.host"] != "aurora.internal" || settings["tenants.acme.pool_size"] != "20" || settings["tenants.globex.pool_mode"] != "session" {
		t.Errorf("settings = %v", settings)
	}
	if !slices.IsSorted([]int{slices.Index(keys, "tenants.acme.pool_size"), slices.Index(keys, "tenants.globex.pool_size")}) {
		t.Errorf("tenant settings not in name order: %v", keys)
	}
	// Tenants appear in name order.
	if strings.Index(out, "tenant acme") > strings.Index(out, "tenant globex") {
		t.Errorf("tenants not sorted:\n%s", out)
	}
}

// writeTestCert writes a self-signed certificate and its key.
func writeTestCert(t *testing.T, dir string) (certPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pgbridge test"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	writeFile(t, dir, "server.crt", string(certPEM))
	writeFile(t, dir, "server.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return certPEM
}

func TestListenTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM := writeTestCert(t, dir)
	crt, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	withTLS := func(tls string) string { return "listen:\n  tls: " + tls + "\n" + minimal }

	c := mustParse(t, withTLS("{cert_file: "+crt+", key_file: "+key+"}"), nil)
	if c.Listen.TLS != (ListenTLS{CertFile: crt, KeyFile: key, Mode: ListenTLSAllow}) {
		t.Errorf("default mode with a certificate: %+v", c.Listen.TLS)
	}
	c = mustParse(t, withTLS("{cert_file: "+crt+", key_file: "+key+", mode: require}"), nil)
	if c.Listen.TLS.Mode != ListenTLSRequire {
		t.Errorf("mode = %s", c.Listen.TLS.Mode)
	}
	// A key that does not match the certificate.
	other := t.TempDir()
	writeTestCert(t, other)
	wantErr(t, parseErr(t, withTLS("{cert_file: "+crt+", key_file: "+filepath.Join(other, "server.key")+"}"), nil),
		"listen.tls.cert_file: cannot load the certificate and key: tls: private key does not match public key")

	// Backend CA files are checked too.
	ca := writeFile(t, dir, "ca.pem", string(certPEM))
	c = mustParse(t, strings.Replace(minimal, "host: db.internal", "host: db.internal\n  tls: {mode: verify-ca, ca_file: "+ca+"}", 1), nil)
	if c.Backend.TLS != (BackendTLS{Mode: BackendTLSVerifyCA, CAFile: ca}) {
		t.Errorf("backend tls = %+v", c.Backend.TLS)
	}
	wantErr(t, parseErr(t, strings.Replace(minimal, "host: db.internal", "host: db.internal\n  tls: {mode: verify-full, ca_file: "+key+"}", 1), nil),
		"backend.tls.ca_file: no PEM certificate found in "+key)
}

func TestFullExample(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("../examples/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checkEveryKey(t, data)
	cfgPath := writeFile(t, dir, "full.yaml", string(data))
	certPEM := writeTestCert(t, dir)
	writeFile(t, dir, "ca.pem", string(certPEM))
	writeFile(t, dir, "acme_report.password", "report-secret\n")
	writeFile(t, dir, "globex_db.password", "globex-backend-secret\n")
	writeFile(t, dir, "globex_app.scram", exampleVerifier+"\n")
	writeFile(t, dir, "ops.scram", exampleVerifier+"\n")
	t.Setenv("PGBRIDGE_BACKEND_HOST", "cluster.example")
	t.Setenv("PGBRIDGE_BACKEND_PORT", "5433")
	t.Setenv("ACME_DB_PASSWORD", "acme-backend-secret")

	c, err := Load(cfgPath)
	if err != nil {
		t.Fatalf("Load(full.yaml):\n%v", err)
	}
	if c.Listen.TLS != (ListenTLS{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"), Mode: ListenTLSAllow}) {
		t.Errorf("listen tls = %+v", c.Listen.TLS)
	}
	if c.Admin.Address != "127.0.0.1:9632" || len(c.Admin.Users) != 1 || c.Admin.Users["ops"].Verifier.String() != exampleVerifier {
		t.Errorf("admin = %+v", c.Admin)
	}
	if c.Backend.Host != "cluster.example" || c.Backend.Port != 5433 || c.Backend.MaxConnections != 40 ||
		c.Backend.MaxActiveTransactions != 8 || c.Backend.AWSRegion != "eu-west-1" ||
		c.Backend.TLS != (BackendTLS{Mode: BackendTLSVerifyFull, CAFile: filepath.Join(dir, "ca.pem")}) {
		t.Errorf("backend = %+v", c.Backend)
	}
	if c.Log != (Log{Level: "info", Format: "json"}) {
		t.Errorf("log = %+v", c.Log)
	}
	acme, globex := c.Tenants["acme"], c.Tenants["globex"]
	if acme.BackendPassword != "acme-backend-secret" || globex.BackendPassword != "globex-backend-secret" {
		t.Errorf("backend passwords: %q %q", acme.BackendPassword, globex.BackendPassword)
	}
	if acme.Policy.PoolSize != 20 || acme.Policy.MinPoolSize != 2 || acme.Policy.StatementTimeout != 2*time.Minute ||
		acme.Policy.IdleInTransactionTimeout != time.Minute {
		t.Errorf("acme policy = %+v", acme.Policy)
	}
	want := Policy{PoolMode: PoolSession, PoolSize: 5, MaxClientConnections: 50, PoolWaitTimeout: 10 * time.Second,
		StatementTimeout: 30 * time.Second, MaxStatementTimeout: 5 * time.Minute, MaxMessageSize: 64 << 20}
	if globex.Policy != want {
		t.Errorf("globex policy = %+v, want %+v", globex.Policy, want)
	}
	users := []string{}
	for _, tn := range c.Tenants {
		for u := range tn.Users {
			users = append(users, u)
		}
	}
	sort.Strings(users)
	if initech := c.Tenants["initech"]; initech == nil || initech.BackendAuth != BackendAuthIAM || initech.BackendPassword != "" {
		t.Errorf("initech = %+v", initech)
	}
	if strings.Join(users, ",") != "acme_app,acme_report,globex_app,globex_batch,initech_app" {
		t.Errorf("users = %v", users)
	}
	if _, cred, ok := c.LookupUser("acme_app"); !ok || cred.Verifier.String() != exampleVerifier {
		t.Errorf("acme_app verifier = %q", cred.Verifier.String())
	}
	if _, cred, ok := c.LookupUser("globex_app"); !ok || cred.Verifier.String() != exampleVerifier {
		t.Errorf("globex_app verifier = %q", cred.Verifier.String())
	}
	if tn, _, ok := c.LookupUser("globex_batch"); !ok || tn != globex {
		t.Error("globex_batch not found")
	}
	out := c.Explain()
	for _, s := range []string{"acme-backend-secret", "globex-backend-secret", "report-secret", exampleVerifier} {
		if strings.Contains(out, s) {
			t.Errorf("Explain shows secret %q", s)
		}
	}
}

// checkEveryKey fails when a configuration key (a yaml tag of the raw
// configuration types) appears nowhere in the full example, so that the
// example cannot fall behind the loader. Map levels (tenant and login
// names) are written "*" on both sides. A type used in several places (a
// login's credential forms, a policy under defaults and under a tenant)
// needs each key shown in one of them.
func checkEveryKey(t *testing.T, data []byte) {
	t.Helper()
	want := map[string][]string{} // type.field -> paths where it may appear
	var walkType func(prefix string, typ reflect.Type)
	walkType = func(prefix string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		switch typ.Kind() {
		case reflect.Map:
			walkType(prefix+".*", typ.Elem())
		case reflect.Struct:
			for i := range typ.NumField() {
				f := typ.Field(i)
				name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				ft := f.Type
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				path := strings.TrimPrefix(prefix+"."+name, ".")
				switch {
				case opts == "inline":
					walkType(prefix, f.Type)
				case name == "" || name == "-":
				case ft == reflect.TypeOf(scalar{}):
					key := typ.Name() + "." + name
					want[key] = append(want[key], path)
				default:
					walkType(path, f.Type)
				}
			}
		}
	}
	walkType("", reflect.TypeOf(rawConfig{}))

	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	var walkNode func(prefix string, n *yaml.Node)
	walkNode = func(prefix string, n *yaml.Node) {
		if n.Kind == yaml.DocumentNode {
			walkNode(prefix, n.Content[0])
			return
		}
		if n.Kind != yaml.MappingNode {
			have[prefix] = true
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if last := prefix[strings.LastIndex(prefix, ".")+1:]; last == "tenants" || last == "users" {
				key = "*"
			}
			walkNode(strings.TrimPrefix(prefix+"."+key, "."), n.Content[i+1])
		}
	}
	walkNode("", &doc)
	var missing []string
	for _, paths := range want {
		if !slices.ContainsFunc(paths, func(p string) bool { return have[p] }) {
			missing = append(missing, strings.Join(paths, " or "))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("examples/full.yaml does not show %s", strings.Join(missing, ", "))
	}
}

// The Aurora Bridge example loads as written, given its files and secrets.
func TestAuroraExample(t *testing.T) {
	data, err := os.ReadFile("../examples/bridge-aurora.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := writeFile(t, dir, "bridge-aurora.yaml", string(data))
	writeFile(t, dir, "global-bundle.pem", string(writeTestCert(t, dir)))
	for _, login := range []string{"sre", "acme_app", "globex_app", "globex_reports", "initech_app"} {
		writeFile(t, dir, login+".scram", exampleVerifier+"\n")
	}
	t.Setenv("ACME_DB_PASSWORD", "acme-backend-secret")
	t.Setenv("GLOBEX_DB_PASSWORD", "globex-backend-secret")

	c, err := Load(cfgPath)
	if err != nil {
		t.Fatalf("Load(bridge-aurora.yaml):\n%v", err)
	}
	if len(c.Tenants) != 3 || c.Backend.MaxActiveTransactions != 16 || c.Backend.ResumeTimeout != 30*time.Second ||
		c.Listen.TLS.Mode != ListenTLSRequire || c.Tenants["initech"].BackendAuth != BackendAuthIAM ||
		c.Tenants["initech"].Policy.PoolMode != PoolSession || c.Tenants["acme"].Policy.ReservedConnections != 10 ||
		c.Tenants["globex"].Policy.PoolSize != 20 || c.Tenants["globex"].Policy.MinPoolSize != 0 {
		t.Errorf("config = %s", c.Explain())
	}
}
