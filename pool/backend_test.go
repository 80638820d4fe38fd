package pool

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgbridge/pgbridge/internal/pgtest"
	"github.com/pgbridge/pgbridge/routing"
)

// ---- real backends ---------------------------------------------------------

// tlsServer is a second throwaway cluster with ssl on, a certificate from a
// CA made for the test, and a pg_hba.conf that admits tenant roles over TLS
// only (the superuser may still use plaintext, for the test's own checks).
var tlsServer struct {
	once    sync.Once
	err     error
	dir     string
	c       *pgtest.Cluster
	certs   pgtest.Certs
	wrongCA string // a CA that did not sign the server's certificate
}

func tlsCluster(t *testing.T) *pgtest.Cluster {
	t.Helper()
	s := &tlsServer
	s.once.Do(func() {
		s.err = func() error {
			var err error
			if s.dir, err = os.MkdirTemp("", "pgbridge-pool-tls-"); err != nil {
				return err
			}
			if s.certs, err = pgtest.GenerateCerts(s.dir); err != nil {
				return err
			}
			other := filepath.Join(s.dir, "other")
			if err := os.Mkdir(other, 0o755); err != nil {
				return err
			}
			wrong, err := pgtest.GenerateCerts(other)
			if err != nil {
				return err
			}
			s.wrongCA = wrong.CAFile
			if s.c, err = pgtest.Start(pgtest.WithTLS(s.certs.CertFile, s.certs.KeyFile)); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, name := range tenantNames {
				if _, err := s.c.CreateTenantWithPassword(ctx, name, tenants[name].Password); err != nil {
					return err
				}
			}
			hba := "local all all trust\n" +
				"host all postgres 127.0.0.1/32 scram-sha-256\n" +
				"hostssl all all 127.0.0.1/32 scram-sha-256\n"
			if err := os.WriteFile(filepath.Join(s.c.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
				return err
			}
			return s.c.Reload()
		}()
	})
	if s.err != nil {
		t.Fatalf("TLS test cluster: %v", s.err)
	}
	return s.c
}

func closeTLSCluster() {
	if tlsServer.c != nil {
		tlsServer.c.Close()
	}
	if tlsServer.dir != "" {
		os.RemoveAll(tlsServer.dir)
	}
}

// pgBackend is the backend section for a test cluster.
func pgBackend(c *pgtest.Cluster, limit int) routing.Backend {
	return routing.Backend{
		Host:           c.Host,
		Port:           c.Port,
		TLS:            routing.BackendTLS{Mode: routing.BackendTLSDisable},
		MaxConnections: limit,
		ConnectTimeout: 10 * time.Second,
	}
}

// pgConfig is config() for tenants provisioned on the test clusters.
func pgConfig(c *pgtest.Cluster, limit int, specs ...tenantSpec) *routing.Config {
	cfg := config(limit, specs...)
	cfg.Backend = pgBackend(c, limit)
	for _, s := range specs {
		pt, ok := tenants[s.name]
		if !ok {
			panic("no test tenant " + s.name)
		}
		t := cfg.Tenants[s.name]
		t.Database, t.BackendUser, t.BackendPassword = pt.Database, pt.User, pt.Password
		t.BackendAuth = routing.BackendAuthPassword
	}
	return cfg
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sslInUse reports whether the backend with pid encrypts its connection.
func sslInUse(t *testing.T, c *pgtest.Cluster, pid uint32) bool {
	t.Helper()
	n, err := c.QueryInt(testCtx(t), "postgres", "select count(*) from pg_stat_ssl where pid = $1 and ssl", int(pid))
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// toLoopback resolves every name to 127.0.0.1, so that a test can reach
// the cluster under a name its certificate does not carry.
func toLoopback(calls *atomic.Int64) pgconn.LookupFunc {
	return func(ctx context.Context, host string) ([]string, error) {
		if calls != nil {
			calls.Add(1)
		}
		return []string{"127.0.0.1"}, nil
	}
}

// ---- backend TLS -------------------------------------------------------------

func TestBackendTLS(t *testing.T) {
	tc := tlsCluster(t)
	good, wrong := tlsServer.certs.CAFile, tlsServer.wrongCA
	tests := []struct {
		name    string
		plain   bool // dial the plaintext cluster instead
		host    string
		mode    routing.BackendTLSMode
		ca      string
		wantErr string // substring; "" = success over TLS (or plaintext when plain)
	}{
		{name: "verify-full", host: "127.0.0.1", mode: routing.BackendTLSVerifyFull, ca: good},
		{name: "verify-full by DNS name", host: "localhost", mode: routing.BackendTLSVerifyFull, ca: good},
		{name: "verify-full wrong host name", host: "db.wrong.test", mode: routing.BackendTLSVerifyFull, ca: good,
			wantErr: "certificate is valid for localhost, not db.wrong.test"},
		{name: "verify-full wrong CA", host: "127.0.0.1", mode: routing.BackendTLSVerifyFull, ca: wrong,
			wantErr: "certificate signed by unknown authority"},
		{name: "verify-ca ignores the name", host: "db.wrong.test", mode: routing.BackendTLSVerifyCA, ca: good},
		{name: "verify-ca wrong CA", host: "127.0.0.1", mode: routing.BackendTLSVerifyCA, ca: wrong,
			wantErr: "certificate signed by unknown authority"},
		{name: "require without CA", host: "db.wrong.test", mode: routing.BackendTLSRequire},
		{name: "require with a CA checks the chain", host: "127.0.0.1", mode: routing.BackendTLSRequire, ca: wrong,
			wantErr: "certificate signed by unknown authority"},
		{name: "prefer uses TLS", host: "127.0.0.1", mode: routing.BackendTLSPrefer},
		{name: "disable refused by hostssl", host: "127.0.0.1", mode: routing.BackendTLSDisable,
			wantErr: "no encryption"},
		{name: "prefer falls back to plaintext", plain: true, host: "127.0.0.1", mode: routing.BackendTLSPrefer},
		{name: "require refused by a plaintext server", plain: true, host: "127.0.0.1", mode: routing.BackendTLSRequire,
			wantErr: "server refused TLS connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tc
			if tt.plain {
				c = cluster
			}
			b := pgBackend(c, 10)
			b.Host = tt.host
			b.TLS = routing.BackendTLS{Mode: tt.mode, CAFile: tt.ca}
			d := &PgconnDialer{Backend: b, LookupFunc: toLoopback(nil)}
			tenant := pgConfig(c, 10, tenantSpec{name: "acme", poolSize: 1}).Tenants["acme"]
			conn, err := d.Dial(testCtx(t), tenant)
			if tt.wantErr != "" {
				if err == nil {
					conn.close()
					t.Fatalf("dial succeeded, want an error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.close()
			if err := conn.Exec(testCtx(t), "select 1"); err != nil {
				t.Fatalf("query over the hijacked connection: %v", err)
			}
			tc, isTLS := conn.Conn.(*tls.Conn)
			if ssl := sslInUse(t, c, conn.PID); ssl != !tt.plain || isTLS != !tt.plain {
				t.Fatalf("pg_stat_ssl.ssl = %v, tls.Conn = %v; want %v", ssl, isTLS, !tt.plain)
			}
			// Under TLS or not, the socket's reads and writes are sockio's.
			sock := conn.Conn
			if isTLS {
				sock = tc.NetConn()
			}
			if _, plainTCP := sock.(*net.TCPConn); plainTCP && runtime.GOOS == "linux" {
				t.Fatal("the backend socket is not wrapped by internal/sockio")
			}
		})
	}
}

func TestTLSConfigFor(t *testing.T) {
	roots := x509.NewCertPool()
	tests := []struct {
		mode       routing.BackendTLSMode
		host       string
		roots      *x509.CertPool
		skip       bool // InsecureSkipVerify (no name check by crypto/tls)
		chain      bool // chain checked by VerifyConnection
		serverName string
	}{
		{mode: routing.BackendTLSPrefer, host: "db.example", skip: true, serverName: "db.example"},
		{mode: routing.BackendTLSPrefer, host: "db.example", roots: roots, skip: true, serverName: "db.example"},
		{mode: routing.BackendTLSRequire, host: "10.0.0.1", skip: true},
		{mode: routing.BackendTLSRequire, host: "db.example", roots: roots, skip: true, chain: true, serverName: "db.example"},
		{mode: routing.BackendTLSVerifyCA, host: "db.example", roots: roots, skip: true, chain: true, serverName: "db.example"},
		{mode: routing.BackendTLSVerifyFull, host: "db.example", roots: roots, serverName: "db.example"},
		{mode: routing.BackendTLSVerifyFull, host: "10.0.0.1", roots: roots, serverName: "10.0.0.1"},
	}
	for _, tt := range tests {
		c := tlsConfigFor(tt.mode, tt.host, tt.roots)
		if c.InsecureSkipVerify != tt.skip || (c.VerifyConnection != nil) != tt.chain || c.ServerName != tt.serverName {
			t.Errorf("%s %s roots=%v: skip=%v chain=%v name=%q; want %v %v %q", tt.mode, tt.host, tt.roots != nil,
				c.InsecureSkipVerify, c.VerifyConnection != nil, c.ServerName, tt.skip, tt.chain, tt.serverName)
		}
		if c.MinVersion < tls.VersionTLS12 {
			t.Errorf("%s: MinVersion %x", tt.mode, c.MinVersion)
		}
	}
}

// The environment must not redirect or reconfigure backend dials.
func TestDialIgnoresPGEnvironment(t *testing.T) {
	for k, v := range map[string]string{
		"PGHOST": "192.0.2.1", "PGPORT": "1", "PGSSLMODE": "verify-full", "PGSSLNEGOTIATION": "direct",
		"PGTARGETSESSIONATTRS": "read-only", "PGREQUIREAUTH": "md5", "PGOPTIONS": "-c statement_timeout=1",
		"PGCHANNELBINDING": "require", "PGMAXPROTOCOLVERSION": "3.2",
	} {
		t.Setenv(k, v)
	}
	d := &PgconnDialer{Backend: pgBackend(cluster, 10)}
	conn, err := d.Dial(testCtx(t), pgConfig(cluster, 10, tenantSpec{name: "acme", poolSize: 1}).Tenants["acme"])
	if err != nil {
		t.Fatalf("dial with PG* variables set: %v", err)
	}
	defer conn.close()
	if err := conn.Exec(testCtx(t), "select 1"); err != nil {
		t.Fatal(err)
	}
}

// ---- host name resolution ------------------------------------------------------

// Each dial looks the backend host name up again, so a failover that moves
// the cluster endpoint's DNS record is followed by the next dial.
func TestEveryDialResolvesTheHostAgain(t *testing.T) {
	var lookups atomic.Int64
	cfg := pgConfig(cluster, 10, tenantSpec{name: "acme", poolSize: 3})
	cfg.Backend.Host = "cluster-endpoint.test"
	m := New(cfg, WithDialer(&PgconnDialer{Backend: cfg.Backend, LookupFunc: toLoopback(&lookups)}), withInterval(time.Hour))
	defer m.Close()
	var held []*Conn
	for i := 1; i <= 3; i++ {
		c, err := m.Acquire(testCtx(t), "acme")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if n := lookups.Load(); n != int64(i) {
			t.Fatalf("after %d dials, %d lookups", i, n)
		}
	}
	for _, c := range held {
		m.Discard(c)
	}
	c, err := m.Acquire(testCtx(t), "acme")
	if err != nil {
		t.Fatal(err)
	}
	m.Release(c)
	if n := lookups.Load(); n != 4 {
		t.Fatalf("a dial after discards made %d lookups in all, want 4", n)
	}
}

// ---- RDS IAM authentication ------------------------------------------------------

// fakePG is a loopback server that speaks just enough of the protocol for
// a pgconn dial: optional TLS, cleartext password authentication (as RDS
// asks of IAM logins), and empty answers to queries. It records the
// passwords it was sent.
type fakePG struct {
	ln        net.Listener
	tlsConf   *tls.Config // nil: answer SSLRequest with 'N'
	mu        sync.Mutex
	passwords []string
	users     []string
	wg        sync.WaitGroup
}

func newFakePG(t *testing.T, withTLS bool) *fakePG {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePG{ln: ln}
	if withTLS {
		certs, err := pgtest.GenerateCerts(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(certs.CertFile, certs.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		f.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer nc.Close()
				f.serve(nc)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakePG) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *fakePG) serve(nc net.Conn) {
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	be := pgproto3.NewBackend(nc, nc)
	msg, err := be.ReceiveStartupMessage()
	if err != nil {
		return
	}
	if _, ok := msg.(*pgproto3.SSLRequest); ok {
		if f.tlsConf == nil {
			if _, err := nc.Write([]byte{'N'}); err != nil {
				return
			}
		} else {
			if _, err := nc.Write([]byte{'S'}); err != nil {
				return
			}
			tc := tls.Server(nc, f.tlsConf)
			if err := tc.Handshake(); err != nil {
				return
			}
			nc = tc
			be = pgproto3.NewBackend(tc, tc)
		}
		if msg, err = be.ReceiveStartupMessage(); err != nil {
			return
		}
	}
	sm, ok := msg.(*pgproto3.StartupMessage)
	if !ok {
		return
	}
	be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if be.Flush() != nil {
		return
	}
	be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
	msg, err = be.Receive()
	if err != nil {
		return
	}
	pw, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return
	}
	f.mu.Lock()
	f.passwords = append(f.passwords, pw.Password)
	f.users = append(f.users, sm.Parameters["user"])
	f.mu.Unlock()
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.Query:
			be.Send(&pgproto3.EmptyQueryResponse{})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if be.Flush() != nil {
				return
			}
		case *pgproto3.Terminate:
			return
		}
	}
}

func (f *fakePG) seen() (users, passwords []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.users...), append([]string(nil), f.passwords...)
}

func iamTenant() *routing.Tenant {
	t := config(10, tenantSpec{name: "acme", poolSize: 1}).Tenants["acme"]
	t.BackendAuth = routing.BackendAuthIAM
	t.BackendUser = "acme_user"
	t.BackendPassword = ""
	return t
}

var tokenForm = regexp.MustCompile(`^127\.0\.0\.1:\d+/?\?Action=connect&DBUser=acme_user` +
	`&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=(AKIDPGBRIDGETEST|AKIDFROMENV)%2F\d{8}%2Feu-west-1%2Frds-db%2Faws4_request` +
	`&X-Amz-Date=\d{8}T\d{6}Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=[0-9a-f]{64}$`)

func TestIAMTokenIsThePassword(t *testing.T) {
	srv := newFakePG(t, true)
	creds := credentials.NewStaticCredentialsProvider("AKIDPGBRIDGETEST", "test-secret-key", "")
	b := routing.Backend{Host: "127.0.0.1", Port: srv.port(), AWSRegion: "eu-west-1",
		TLS: routing.BackendTLS{Mode: routing.BackendTLSRequire}, ConnectTimeout: 5 * time.Second}
	d := &PgconnDialer{Backend: b, Credentials: creds}
	for i := 0; i < 2; i++ {
		conn, err := d.Dial(testCtx(t), iamTenant())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if _, ok := conn.Conn.(*tls.Conn); !ok {
			t.Fatal("IAM dial not over TLS")
		}
		conn.close()
	}
	users, pws := srv.seen()
	if len(pws) != 2 || users[0] != "acme_user" {
		t.Fatalf("server saw users %v and %d passwords", users, len(pws))
	}
	for _, tok := range pws {
		if !tokenForm.MatchString(tok) {
			t.Fatalf("password is not an RDS IAM token: %q", tok)
		}
		checkSignature(t, tok, creds)
	}
}

// checkSignature signs the token's request again with the same time and
// credentials and compares the signatures, proving the token is a valid
// SigV4 presigned rds-db:connect request, not merely of the right shape.
func checkSignature(t *testing.T, tok string, creds aws.CredentialsProvider) {
	t.Helper()
	u, err := url.Parse("https://" + tok)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	when, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		t.Fatal(err)
	}
	want := q.Get("X-Amz-Signature")
	unsigned := url.Values{"Action": {"connect"}, "DBUser": {q.Get("DBUser")}, "X-Amz-Expires": {"900"}}
	req, err := http.NewRequest("GET", "https://"+u.Host+"/?"+unsigned.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := creds.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const emptyPayload = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), c, req, emptyPayload, "rds-db", "eu-west-1", when)
	if err != nil {
		t.Fatal(err)
	}
	su, _ := url.Parse(signed)
	if got := su.Query().Get("X-Amz-Signature"); got != want {
		t.Fatalf("token signature %s, re-signed %s", want, got)
	}
}

// With the default chain, credentials come from the environment (and
// shared files, instance roles, ...); the test points everything but the
// environment at nothing, so it runs offline.
func TestIAMDefaultCredentialChain(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	srv := newFakePG(t, true)
	b := routing.Backend{Host: "127.0.0.1", Port: srv.port(), AWSRegion: "eu-west-1",
		TLS: routing.BackendTLS{Mode: routing.BackendTLSRequire}, ConnectTimeout: 5 * time.Second}
	d := &PgconnDialer{Backend: b}
	conn, err := d.Dial(testCtx(t), iamTenant())
	if err != nil {
		t.Fatal(err)
	}
	conn.close()
	_, pws := srv.seen()
	if len(pws) != 1 || !strings.Contains(pws[0], "X-Amz-Credential=AKIDFROMENV%2F") || !tokenForm.MatchString(pws[0]) {
		t.Fatalf("passwords seen: %q", pws)
	}
	// The chain is loaded once and kept by the dialers Update derives.
	first := d.signer().chain
	if first == nil || d.withBackend(b).signer().chain != first {
		t.Fatal("default credential chain not cached and shared")
	}
}

// backend.tls.mode prefer must not fall back to plaintext for an IAM
// tenant: the token would travel in the clear. disable is refused.
func TestIAMNeverWithoutTLS(t *testing.T) {
	srv := newFakePG(t, false) // answers SSLRequest with 'N'
	creds := credentials.NewStaticCredentialsProvider("AKIDPGBRIDGETEST", "test-secret-key", "")
	for _, mode := range []routing.BackendTLSMode{routing.BackendTLSPrefer, routing.BackendTLSDisable} {
		b := routing.Backend{Host: "127.0.0.1", Port: srv.port(), AWSRegion: "eu-west-1",
			TLS: routing.BackendTLS{Mode: mode}, ConnectTimeout: 5 * time.Second}
		d := &PgconnDialer{Backend: b, Credentials: creds}
		conn, err := d.Dial(testCtx(t), iamTenant())
		if err == nil {
			conn.close()
			t.Fatalf("mode %s: IAM dial succeeded against a server without TLS", mode)
		}
	}
	if _, pws := srv.seen(); len(pws) != 0 {
		t.Fatalf("a token was sent in plaintext: %q", pws)
	}
}

func TestIAMCredentialError(t *testing.T) {
	srv := newFakePG(t, true)
	boom := errors.New("no credentials here")
	b := routing.Backend{Host: "127.0.0.1", Port: srv.port(), AWSRegion: "eu-west-1",
		TLS: routing.BackendTLS{Mode: routing.BackendTLSRequire}, ConnectTimeout: 5 * time.Second}
	d := &PgconnDialer{Backend: b, Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{}, boom
	})}
	if _, err := d.Dial(testCtx(t), iamTenant()); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the credentials error", err)
	}
	if _, pws := srv.seen(); len(pws) != 0 {
		t.Fatalf("server got passwords %q", pws)
	}
}

// ---- live changes against real backends ------------------------------------------

// countBackends counts a role's connections opened by pgbridge.
func countBackends(t *testing.T, c *pgtest.Cluster, user string) int64 {
	t.Helper()
	n, err := c.QueryInt(testCtx(t), "postgres",
		"select count(*) from pg_stat_activity where usename = $1 and application_name = 'pgbridge'", user)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An Update that moves the backend (a failover to another endpoint, with
// TLS now) closes idle connections to the old one at once, in-use ones as
// they come back, and dials the new one from then on.
func TestUpdateMovesToNewEndpoint(t *testing.T) {
	tc := tlsCluster(t)
	specs := []tenantSpec{{name: "acme", poolSize: 2}, {name: "globex", poolSize: 2}}
	m := New(pgConfig(cluster, 10, specs...), withInterval(time.Hour))
	defer m.Close()
	ctx := testCtx(t)
	idle, err := m.Acquire(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	m.Release(idle)
	busy, err := m.Acquire(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if countBackends(t, cluster, "acme_user") != 1 || countBackends(t, cluster, "globex_user") != 1 {
		t.Fatal("connections not on the first cluster")
	}

	next := pgConfig(tc, 10, specs...)
	next.Backend.TLS = routing.BackendTLS{Mode: routing.BackendTLSVerifyFull, CAFile: tlsServer.certs.CAFile}
	m.Update(next)
	eventually(t, "the old endpoint's idle connection to close", func() bool { return countBackends(t, cluster, "acme_user") == 0 })
	if err := busy.Exec(ctx, "select 1"); err != nil {
		t.Fatalf("an in-use connection noticed the Update: %v", err)
	}
	m.Release(busy)
	eventually(t, "the old endpoint's in-use connection to close", func() bool { return countBackends(t, cluster, "globex_user") == 0 })

	c, err := m.Acquire(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release(c)
	if !sslInUse(t, tc, c.PID) {
		t.Fatal("new connection not on the new endpoint over TLS")
	}
}

// ---- failover hygiene ---------------------------------------------------------------

// After Suspect, idle connections are validated before reuse; those that
// report read-only (the old writer after a failover; here a cluster set to
// default_transaction_read_only) are dropped and a fresh one is dialed.
func TestSuspectDropsReadOnlyConnections(t *testing.T) {
	ctx := testCtx(t)
	m := New(pgConfig(cluster, 10, tenantSpec{name: "acme", poolSize: 3}), withInterval(time.Hour))
	defer m.Close()
	pids := idleConns(t, m, "acme", 3)

	// On a healthy server validation keeps the connection.
	m.Suspect()
	c, err := m.Acquire(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !pids[c.PID] {
		t.Fatal("a healthy suspect connection was replaced")
	}
	m.Release(c)

	setReadOnly(t, true)
	t.Cleanup(func() { setReadOnly(t, false) })

	// Without Suspect nothing is checked: the pool does not know yet.
	c, err = m.Acquire(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !pids[c.PID] {
		t.Fatal("a connection was replaced without Suspect")
	}
	m.Release(c)

	dials := m.BackendStats().Connects.Get("ok")
	m.Suspect()
	c, err = m.Acquire(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release(c)
	if pids[c.PID] {
		t.Fatalf("Acquire handed out read-only connection %d after Suspect", c.PID)
	}
	if n := m.BackendStats().Connects.Get("ok") - dials; n != 1 {
		t.Fatalf("%d new dials, want 1", n)
	}
	if s := m.Stats()["acme"]; s.Open != 1 || s.InUse != 1 {
		t.Fatalf("stats %+v; want the three read-only connections gone", s)
	}
	for pid := range pids {
		eventually(t, "the read-only backends to close", func() bool {
			n, err := cluster.QueryInt(ctx, "postgres", "select count(*) from pg_stat_activity where pid = $1", int(pid))
			return err == nil && n == 0
		})
	}
}

// Validating suspect connections ends with the caller's pool_wait_timeout:
// a server that stopped answering without closing its connections (here
// its backends are stopped with SIGSTOP) costs one wait, not a
// connect_timeout per idle connection.
func TestSuspectValidationEndsWithThePoolWait(t *testing.T) {
	ctx := testCtx(t)
	cfg := pgConfig(cluster, 10, tenantSpec{name: "acme", poolSize: 3, wait: 500 * time.Millisecond})
	cfg.Backend.ConnectTimeout = 5 * time.Second
	m := New(cfg, withInterval(time.Hour))
	defer m.Close()
	pids := idleConns(t, m, "acme", 3)
	for pid := range pids {
		if err := syscall.Kill(int(pid), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(int(pid), syscall.SIGCONT) })
	}
	m.Suspect()
	start := time.Now()
	c, err := m.Acquire(ctx, "acme")
	took := time.Since(start)
	switch {
	case err == nil:
		if pids[c.PID] {
			t.Errorf("handed out stopped backend %d", c.PID)
		}
		m.Release(c)
	case !errors.Is(err, ErrWaitTimeout):
		t.Fatal(err)
	}
	if took > 4*time.Second {
		t.Fatalf("Acquire took %s with pool_wait_timeout 500ms (connect_timeout 5s)", took)
	}
	t.Logf("Acquire: %v after %s", err, took)
}

// idleConns opens n connections of tenant and puts them back idle,
// returning their backend PIDs.
func idleConns(t *testing.T, m *Manager, tenant string, n int) map[uint32]bool {
	t.Helper()
	var held []*Conn
	pids := map[uint32]bool{}
	for range n {
		c, err := m.Acquire(testCtx(t), tenant)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		pids[c.PID] = true
	}
	for _, c := range held {
		m.Release(c)
	}
	return pids
}

func setReadOnly(t *testing.T, on bool) {
	t.Helper()
	ctx := testCtx(t)
	sql := "ALTER SYSTEM RESET default_transaction_read_only"
	if on {
		sql = "ALTER SYSTEM SET default_transaction_read_only = on"
	}
	if err := cluster.Exec(ctx, "postgres", sql); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Reload(); err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	if on {
		want = 1
	}
	eventually(t, "the reload", func() bool {
		n, err := cluster.QueryInt(ctx, "postgres", "select (current_setting('default_transaction_read_only') = 'on')::int")
		return err == nil && n == want
	})
}

// An idle connection the server has closed (pg_terminate_backend; the same
// happens to every idle connection when the server restarts) is never
// handed out: its socket shows the FATAL message and end of stream.
func TestAcquireSkipsConnectionsTheServerClosed(t *testing.T) {
	ctx := testCtx(t)
	clk := &fakeClock{t: time.Now()}
	m := New(pgConfig(cluster, 10, tenantSpec{name: "globex", poolSize: 2}), withInterval(time.Hour), WithClock(clk.Now))
	defer m.Close()
	c, err := m.Acquire(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	dead := c.PID
	m.Release(c)
	if err := cluster.Exec(ctx, "postgres", "select pg_terminate_backend($1)", int(dead)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the backend to exit", func() bool {
		n, err := cluster.QueryInt(ctx, "postgres", "select count(*) from pg_stat_activity where pid = $1", int(dead))
		return err == nil && n == 0
	})
	clk.Advance(peekAfter) // sockets of connections reused at once are not peeked
	c, err = m.Acquire(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release(c)
	if c.PID == dead {
		t.Fatal("Acquire handed out a connection the server had closed")
	}
	if err := c.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
}

// ---- auto-pause ----------------------------------------------------------------------

// With min_pool_size 0, an idle router holds no backend connection once
// idle_timeout has passed, so an Aurora Serverless v2 cluster can pause.
func TestIdleTimeoutLeavesNoConnections(t *testing.T) {
	ctx := testCtx(t)
	cfg := pgConfig(cluster, 10, tenantSpec{name: "initech", poolSize: 3})
	cfg.Backend.IdleTimeout = 300 * time.Millisecond
	m := New(cfg) // the maintenance period follows idle_timeout
	defer m.Close()
	var held []*Conn
	for i := 0; i < 3; i++ {
		c, err := m.Acquire(ctx, "initech")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for _, c := range held {
		m.Release(c)
	}
	if n := countBackends(t, cluster, "initech_user"); n != 3 {
		t.Fatalf("%d connections right after release, want 3 idle", n)
	}
	eventually(t, "no backend connections", func() bool { return countBackends(t, cluster, "initech_user") == 0 })
	if s := m.Stats()["initech"]; s.Open != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// ---- fairness with a real backend ------------------------------------------------------

// TestFairnessRealBackend: two tenants with more clients than connections
// share a budget smaller than the sum of their pool sizes for 10 seconds.
// The connection time each gets is within 20% of its pool_size-weighted
// share of the budget.
func TestFairnessRealBackend(t *testing.T) {
	const (
		limit   = 4
		clients = 8
		run     = 10 * time.Second
	)
	m := New(pgConfig(cluster, limit,
		tenantSpec{name: "acme", poolSize: 6, wait: 10 * time.Second},
		tenantSpec{name: "globex", poolSize: 2, wait: 10 * time.Second}), withInterval(time.Hour))
	defer m.Close()
	want := map[string]float64{"acme": 0.75, "globex": 0.25}
	var (
		mu    sync.Mutex
		held  = map[string]time.Duration{}
		count = map[string]int{}
	)
	stop := time.Now().Add(run)
	var wg sync.WaitGroup
	for tenant := range want {
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					c, err := m.Acquire(context.Background(), tenant)
					if err != nil {
						t.Error(err)
						return
					}
					start := time.Now()
					err = c.Exec(context.Background(), "select pg_sleep(0.002)")
					d := time.Since(start)
					if err != nil {
						m.Discard(c)
						t.Error(err)
						return
					}
					m.Release(c)
					mu.Lock()
					held[tenant] += d
					count[tenant]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	total := held["acme"] + held["globex"]
	for tenant, share := range want {
		got := float64(held[tenant]) / float64(total)
		t.Logf("%s: %d transactions, %.1fs of connection time, share %.3f (configured %.2f)",
			tenant, count[tenant], held[tenant].Seconds(), got, share)
		if math.Abs(got-share) > 0.2*share {
			t.Errorf("%s got %.3f of the connection time, want %.2f within 20%%", tenant, got, share)
		}
	}
	checkInvariants(t, m)
}
