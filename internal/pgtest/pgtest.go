package pgtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// InstallHint is the command that installs the PostgreSQL server binaries.
const InstallHint = "apt-get install -y postgresql"

const (
	serverTimeout  = 60 * time.Second
	connectTimeout = 10 * time.Second
	startAttempts  = 3
)

// Cluster is a running (or stopped) throwaway PostgreSQL server.
type Cluster struct {
	Host          string // always "127.0.0.1"
	Port          int
	SuperUser     string // "postgres"
	SuperPassword string // random
	DataDir       string
	BinDir        string

	root    string // temp dir: data dir, socket, log
	logFile string
	cred    *syscall.Credential // nil unless running as root
	opts    options

	mu      sync.Mutex
	running bool
	closed  bool
}

type options struct {
	certFile, keyFile string
	config            [][2]string
}

// Option configures Start.
type Option func(*options)

// WithTLS turns on ssl with the given certificate and key. The files are
// copied into the data directory, so the originals may live anywhere.
func WithTLS(certFile, keyFile string) Option {
	return func(o *options) { o.certFile, o.keyFile = certFile, keyFile }
}

// WithConfig adds a postgresql.conf setting, applied after (and so overriding)
// pgtest's defaults. The value is written quoted; pass it unquoted.
func WithConfig(key, value string) Option {
	return func(o *options) { o.config = append(o.config, [2]string{key, value}) }
}

// Start creates a fresh cluster in a new temp dir and starts it on a free
// 127.0.0.1 port. It returns once the server accepts connections.
func Start(opts ...Option) (*Cluster, error) {
	c := &Cluster{Host: "127.0.0.1", SuperUser: "postgres"}
	for _, o := range opts {
		o(&c.opts)
	}
	var err error
	if c.BinDir, err = findBinDir(); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if c.cred, err = lookupCred("postgres"); err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs the postgres OS user (%s): %w", InstallHint, err)
		}
	}
	reapOrphans()
	if c.root, err = os.MkdirTemp("", "pgbridge-pgtest-"); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if start, ok := processStart(os.Getpid()); ok {
		owner := fmt.Sprintf("%d %s\n", os.Getpid(), start)
		if err := os.WriteFile(filepath.Join(c.root, ownerFile), []byte(owner), 0o644); err != nil {
			_ = os.RemoveAll(c.root)
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	c.DataDir = filepath.Join(c.root, "data")
	c.logFile = filepath.Join(c.root, "postgres.log")
	if err := c.setup(); err != nil {
		// A failed or timed-out start may still have left a postmaster.
		_, statErr := os.Stat(filepath.Join(c.DataDir, "postmaster.pid"))
		c.running = statErr == nil
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) setup() error {
	if err := c.chown(c.root); err != nil {
		return err
	}
	c.SuperPassword = rand.Text()
	pwfile := filepath.Join(c.root, "pwfile")
	if err := c.writeFile(pwfile, []byte(c.SuperPassword+"\n"), 0o600); err != nil {
		return err
	}
	err := c.run("initdb", "-D", c.DataDir, "-U", c.SuperUser,
		"--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile="+pwfile,
		"-E", "UTF8", "--locale=C", "--no-sync")
	os.Remove(pwfile)
	if err != nil {
		return err
	}
	hba := "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := c.writeFile(filepath.Join(c.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return err
	}
	if c.opts.certFile != "" {
		if err := c.copyFile(c.opts.certFile, filepath.Join(c.DataDir, "server.crt")); err != nil {
			return err
		}
		if err := c.copyFile(c.opts.keyFile, filepath.Join(c.DataDir, "server.key")); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	_, err = f.WriteString("\ninclude 'pgtest.conf'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}

	// The free port can be taken between picking and binding; retry then.
	for attempt := 1; ; attempt++ {
		if c.Port, err = freePort(); err != nil {
			return fmt.Errorf("pgtest: pick port: %w", err)
		}
		if err := c.writeFile(filepath.Join(c.DataDir, "pgtest.conf"), []byte(c.conf()), 0o600); err != nil {
			return err
		}
		err = c.pgctl("start")
		if err == nil {
			c.running = true
			return nil
		}
		if attempt == startAttempts || !strings.Contains(c.LogTail(20), "already in use") {
			return err
		}
	}
}

func (c *Cluster) conf() string {
	settings := [][2]string{
		{"listen_addresses", c.Host},
		{"port", strconv.Itoa(c.Port)},
		{"unix_socket_directories", c.root},
		{"fsync", "off"},
		{"synchronous_commit", "off"},
		{"full_page_writes", "off"},
		{"max_connections", "200"},
		{"password_encryption", "scram-sha-256"},
	}
	if c.opts.certFile != "" {
		settings = append(settings, [2]string{"ssl", "on"},
			[2]string{"ssl_cert_file", "server.crt"}, [2]string{"ssl_key_file", "server.key"})
	}
	var b strings.Builder
	for _, kv := range append(settings, c.opts.config...) {
		fmt.Fprintf(&b, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	return b.String()
}

// Close stops the server (immediate mode) and removes the temp dir. Calling
// it again is a no-op.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var err error
	if c.running {
		if err = c.pgctl("stop", "-m", "immediate"); err != nil {
			c.killOwnPostmaster()
		}
		c.running = false
	}
	if rerr := os.RemoveAll(c.root); rerr != nil && err == nil {
		err = fmt.Errorf("pgtest: %w", rerr)
	}
	return err
}

// killOwnPostmaster is the last resort when pg_ctl stop fails. It kills the
// PID from our data dir's postmaster.pid only if that process's command line
// names our data dir, i.e. it is a server we started.
func (c *Cluster) killOwnPostmaster() {
	pid := c.postmasterPID()
	if pid <= 0 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && strings.Contains(string(cmdline), c.DataDir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// ownerFile, in a cluster's temp dir, names the test process that started
// it (PID and start time, from /proc), so that a later Start can stop the
// clusters of test processes that died without Close (killed by a timeout
// or SIGKILL): their postmasters would otherwise run on.
const ownerFile = "owner"

// processStart returns the start time of process pid (field 22 of
// /proc/PID/stat), which tells a live process from a reused PID; false
// when there is no such process or no /proc.
func processStart(pid int) (string, bool) {
	f := procStat(pid)
	if len(f) < 20 {
		return "", false
	}
	return f[19], true
}

// procStat returns the fields of /proc/PID/stat from the third (the
// state) on, or nil.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')') // the command name may hold spaces
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// reapOrphans stops and removes the clusters whose owner process is gone.
// Clusters without an owner file (being set up, or left by an older
// version) and clusters of live processes are left alone.
func reapOrphans() {
	if _, ok := processStart(os.Getpid()); !ok {
		return // no /proc: nothing can be told
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgbridge-pgtest-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		var pid int
		var start string
		if _, err := fmt.Sscan(string(b), &pid, &start); err != nil {
			continue
		}
		if now, ok := processStart(pid); ok && now == start {
			continue
		}
		orphan := &Cluster{root: dir, DataDir: filepath.Join(dir, "data")}
		orphan.killOwnPostmaster()
		_ = os.RemoveAll(dir)
	}
}

// postmasterPID reads the PID in the data dir's postmaster.pid; 0 when
// there is none.
func (c *Cluster) postmasterPID() int {
	b, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid < 0 {
		return 0
	}
	return pid
}

// StopServer stops postgres (fast mode) but keeps the data dir, to simulate
// an outage. It is a no-op if the server is already stopped.
func (c *Cluster) StopServer() error {
	return c.control(false, func() error { return c.pgctl("stop", "-m", "fast") })
}

// StartServer starts a stopped server again on the same port. It is a no-op
// if the server is running.
func (c *Cluster) StartServer() error {
	return c.control(true, func() error { return c.pgctl("start") })
}

// Restart restarts the server (fast mode shutdown).
func (c *Cluster) Restart() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errClosed
	}
	err := c.pgctl("restart", "-m", "fast")
	c.running = err == nil
	return err
}

// Reload makes the server re-read its configuration files (SIGHUP).
func (c *Cluster) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errClosed
	}
	return c.pgctl("reload")
}

var errClosed = errors.New("pgtest: cluster closed")

func (c *Cluster) control(wantRunning bool, f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errClosed
	}
	if c.running == wantRunning {
		return nil
	}
	if err := f(); err != nil {
		return err
	}
	c.running = wantRunning
	return nil
}

// DSN returns a libpq key=value connection string for 127.0.0.1:Port with
// sslmode=disable.
func (c *Cluster) DSN(user, password, database string) string {
	return fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=%s sslmode=disable connect_timeout=%d",
		c.Host, c.Port, dsnQuote(user), dsnQuote(password), dsnQuote(database), int(connectTimeout/time.Second))
}

// SuperDSN is DSN for the superuser.
func (c *Cluster) SuperDSN(database string) string {
	return c.DSN(c.SuperUser, c.SuperPassword, database)
}

func dsnQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " '\\\t\n\r") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Exec runs sql as the superuser in database on a fresh connection. Without
// args it uses the simple protocol, so sql may hold several statements.
func (c *Cluster) Exec(ctx context.Context, database, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, c.SuperDSN(database))
	if err != nil {
		return fmt.Errorf("pgtest: connect to %s: %w", database, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pgtest: exec %q: %w", sql, err)
	}
	return nil
}

// QueryInt runs a single-value query (e.g. a count over pg_stat_activity) as
// the superuser in database and returns the result.
func (c *Cluster) QueryInt(ctx context.Context, database, sql string, args ...any) (int64, error) {
	conn, err := pgx.Connect(ctx, c.SuperDSN(database))
	if err != nil {
		return 0, fmt.Errorf("pgtest: connect to %s: %w", database, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgtest: query %q: %w", sql, err)
	}
	return n, nil
}

// LogTail returns the last n lines of the server log.
func (c *Cluster) LogTail(n int) string {
	b, err := os.ReadFile(c.logFile)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Main is for TestMain: it starts a cluster, calls run (which usually stores
// the cluster and returns m.Run()), closes the cluster and returns the exit
// code. A nil run just runs m. If the cluster cannot start, Main reports why
// on stderr and returns 1; it never skips.
func Main(m *testing.M, run func(c *Cluster) int) int {
	c, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if run == nil {
		run = func(*Cluster) int { return m.Run() }
	}
	var closeErr error
	code := func() int {
		defer func() { closeErr = c.Close() }() // also on panic
		return run(c)
	}()
	if closeErr != nil {
		fmt.Fprintln(os.Stderr, closeErr)
	}
	return code
}

// pgctl runs pg_ctl with the data dir, log file and timeout filled in.
func (c *Cluster) pgctl(action string, args ...string) error {
	base := []string{action, "-D", c.DataDir, "-w", "-t", strconv.Itoa(int(serverTimeout / time.Second))}
	if action == "start" || action == "restart" {
		base = append(base, "-l", c.logFile)
	}
	return c.run("pg_ctl", append(base, args...)...)
}

// run executes a server binary as the server's OS user, with no PG*
// environment, and folds its output and the log tail into any error.
func (c *Cluster) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
	cmd.Dir = c.root // the postgres user may not be able to read our cwd
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: %s %s: %w\n%s--- server log tail ---\n%s",
			name, strings.Join(args, " "), err, out, c.LogTail(30))
	}
	return nil
}

func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

// writeFile writes a file owned by the server's OS user.
func (c *Cluster) writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return c.chown(path)
}

func (c *Cluster) copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return c.writeFile(dst, b, 0o600)
}

func lookupCred(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// findBinDir locates initdb/pg_ctl/postgres: pg_ctl on PATH, then
// pg_config --bindir, then the newest /usr/lib/postgresql/*/bin.
func findBinDir() (string, error) {
	var candidates []string
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r // /usr/local/bin/pg_ctl may be a lone symlink
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(version(b), version(a)) })
	candidates = append(candidates, dirs...)
	for _, d := range candidates {
		if hasServerBins(d) {
			return d, nil
		}
	}
	return "", errors.New("pgtest: PostgreSQL server binaries (initdb, pg_ctl, postgres) not found " +
		"on PATH, via pg_config --bindir or in /usr/lib/postgresql/*/bin; install them with: " + InstallHint)
}

func hasServerBins(dir string) bool {
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}
