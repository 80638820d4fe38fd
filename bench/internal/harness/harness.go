// Package harness runs pgbridge's comparison load tests: it starts a
// throwaway PostgreSQL with Bridge tenants (internal/pgtest), the real
// pgbridge binary and PgBouncer as child processes, runs every scenario
// against direct PostgreSQL, PgBouncer and pgbridge with the targets
// interleaved round by round, measures the proxies' CPU and memory from
// /proc, and returns a report.Report.
//
// Everything it starts runs in a process group of its own and is stopped
// by the harness, also when the context ends (Ctrl-C, time limit); every
// run is bounded in time.
package harness

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgbridge/pgbridge/bench/internal/report"
	"github.com/pgbridge/pgbridge/internal/pgtest"
)

// Options configure a run. Defaults fills in what is zero.
type Options struct {
	Quick bool // the short version: one round of short runs

	PgbridgeBin string // pgbridge binary; "" builds ./cmd/pgbridge
	LoadgenBin  string // loadgen binary; "" builds ./bench/cmd/loadgen
	OutDir      string // where the report goes (bench/results)
	Name        string // report base name; "" = <date>-<host>[-quick]

	Targets   []string // subset and order of knownTargets
	Scenarios []string // names (or name prefixes) of the scenarios to run; empty = all

	Tenants      int
	PoolSize     int
	RunTime      time.Duration // one pgbench or noisy run
	Rounds       int
	Scale        int     // pgbench scale of the first tenant (the others get 1)
	SamplingRate float64 // pgbench --sampling-rate for latency percentiles

	IdleClients      []int
	IdleParallel     int
	IdleSettle       time.Duration // wait after the idle clients connected, before reading memory
	DirectMaxClients int           // idle scenarios above this skip direct (PostgreSQL max_connections)
	StormClients     int
	NoisyClients     int
	QuietClients     int
	QuietRate        float64 // queries per second per quiet tenant
	// MaxActive is pgbridge's backend.max_active_transactions in the
	// noisy-neighbour scenario: 0 = twice the machine's CPUs, < 0 = none.
	MaxActive int

	Timeout time.Duration // the whole run
	KeepDir bool          // keep the work directory (configs, proxy logs)
	Log     io.Writer     // progress lines
}

// Defaults fills in zero fields, differently for quick runs.
func (o *Options) Defaults() {
	set := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	if len(o.Targets) == 0 {
		o.Targets = []string{report.Direct, report.PgBouncer, report.Pgbridge}
	}
	if o.OutDir == "" {
		o.OutDir = "bench/results"
	}
	set(&o.Tenants, 4)
	set(&o.PoolSize, 20)
	set(&o.Scale, 10)
	if o.SamplingRate == 0 {
		o.SamplingRate = 0.2
	}
	if o.IdleClients == nil {
		o.IdleClients = []int{1000, 10000}
	}
	set(&o.IdleParallel, 32)
	set(&o.DirectMaxClients, 1000)
	set(&o.StormClients, 500)
	set(&o.NoisyClients, 32)
	set(&o.QuietClients, 2)
	if o.MaxActive == 0 {
		o.MaxActive = 2 * runtime.NumCPU()
	}
	if o.QuietRate == 0 {
		o.QuietRate = 50
	}
	if o.Quick {
		setD(&o.RunTime, 2*time.Second)
		set(&o.Rounds, 1)
		// Not shorter than in full runs: pgbridge parks a session (gives
		// its read buffer back) after 1 s idle, noticed up to a watchdog
		// tick (250 ms) later; a 1 s wait measured unparked sessions.
		setD(&o.IdleSettle, 3*time.Second)
		setD(&o.Timeout, 4*time.Minute)
	} else {
		setD(&o.RunTime, 20*time.Second)
		set(&o.Rounds, 2)
		setD(&o.IdleSettle, 3*time.Second)
		setD(&o.Timeout, 45*time.Minute)
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

func (o *Options) pgbenchSeconds() int {
	return max(1, int((o.RunTime+time.Second/2)/time.Second))
}

// env is the running test bed.
type env struct {
	opts  Options
	dir   string // work directory: configs, logs, pgbench transaction logs
	pg    *pgtest.Cluster
	cred  *syscall.Credential // postgres OS user for PgBouncer, when root
	start time.Time

	tenants         []tenant
	pgbridgeBin     string
	loadgenBin      string
	gorelayBin      string
	pgbouncerBin    string
	bouncerVersion  string
	bouncerPrepared bool              // PgBouncer keeps prepared statements in transaction mode
	verifiers       map[string]string // password -> pgbridge verifier
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.opts.Log, "[%6.1fs] %s\n", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...))
}

// knownTargets are the targets a run may name.
var knownTargets = []string{report.Direct, report.PgBouncer, report.Pgbridge, report.GoRelay, report.GoRelayEpoll}

// Run sets up the test bed, runs the scenarios and returns the report. When
// ctx ends or the time limit passes, it stops, cleans up and returns what
// was measured so far, with Interrupted saying why.
func Run(ctx context.Context, opts Options) (*report.Report, error) {
	opts.Defaults()
	for _, t := range opts.Targets {
		if !slices.Contains(knownTargets, t) {
			return nil, fmt.Errorf("unknown target %q (%s)", t, strings.Join(knownTargets, ", "))
		}
	}
	e := &env{opts: opts, start: time.Now(), verifiers: map[string]string{}}
	limit, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	host, _ := os.Hostname()
	r := &report.Report{
		Mode: "full", Host: host, Started: time.Now(), Targets: opts.Targets,
		Settings: report.Settings{
			Tenants: opts.Tenants, PoolSize: opts.PoolSize, RunSeconds: float64(opts.pgbenchSeconds()),
			Rounds: opts.Rounds, PgbenchScale: opts.Scale, SamplingRate: opts.SamplingRate,
		},
	}
	if opts.Quick {
		r.Mode = "quick"
	}
	r.Name = opts.Name
	if r.Name == "" {
		r.Name = time.Now().Format("2006-01-02") + "-" + safeName(host)
		if opts.Quick {
			r.Name += "-quick"
		}
	}

	if note := raiseNoFile(e.opts); note != "" {
		r.Notes = append(r.Notes, note)
	}
	cleanup, err := e.setup(limit)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	r.Machine = e.machine(limit)
	if e.pgbouncerBin == "" && slices.Contains(opts.Targets, report.PgBouncer) {
		r.Notes = append(r.Notes, "PgBouncer is not installed (apt-get install -y pgbouncer): its runs are marked failed.")
	}

	var skipped []string
	for _, sc := range e.scenarios() {
		if !selected(opts.Scenarios, sc.meta.Name) {
			continue
		}
		if opts.Quick && sc.fullOnly && len(opts.Scenarios) == 0 {
			skipped = append(skipped, sc.meta.Name)
			continue
		}
		s := sc.meta
		for _, t := range opts.Targets {
			if sc.unsupported != nil {
				if why := sc.unsupported(t); why != "" {
					mapSet(&s.Unsupported, t, why)
				}
			}
			if sc.notApplicable != nil {
				if why := sc.notApplicable(t); why != "" {
					mapSet(&s.NotApplicable, t, why)
				}
			}
		}
		if limit.Err() == nil {
			e.runScenario(limit, &sc, &s)
		}
		r.Scenarios = append(r.Scenarios, s)
	}
	if len(skipped) > 0 {
		r.Notes = append(r.Notes, "Quick mode leaves out "+strings.Join(skipped, ", ")+" (run them with -scenarios).")
	}
	r.Finished = time.Now()
	switch {
	case ctx.Err() != nil:
		r.Interrupted = "interrupted (" + ctx.Err().Error() + ")"
	case limit.Err() != nil:
		r.Interrupted = "the time limit of " + opts.Timeout.String() + " was reached"
	}
	return r, nil
}

func mapSet(m *map[string]string, k, v string) {
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
}

// selected reports whether scenario name is among the wanted ones (exact
// names or prefixes ending in '*'); no list selects everything.
func selected(want []string, name string) bool {
	if len(want) == 0 {
		return true
	}
	for _, w := range want {
		if w == name || strings.HasSuffix(w, "*") && strings.HasPrefix(name, strings.TrimSuffix(w, "*")) {
			return true
		}
	}
	return false
}

// setup builds the binaries, starts PostgreSQL, provisions the tenants and
// loads pgbench's tables. The returned cleanup undoes what was done, also
// after an error.
func (e *env) setup(ctx context.Context) (cleanup func(), err error) {
	var undo []func()
	cleanup = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if e.dir, err = os.MkdirTemp("", "pgbridge-bench-*"); err != nil {
		return cleanup, err
	}
	if e.opts.KeepDir {
		e.logf("work directory (kept): %s", e.dir)
	} else {
		undo = append(undo, func() { os.RemoveAll(e.dir) })
	}
	// PgBouncer runs as the postgres user when we are root and reads its
	// files from here.
	if err := os.Chmod(e.dir, 0o755); err != nil {
		return cleanup, err
	}
	if e.cred, err = postgresCred(); err != nil {
		return cleanup, err
	}
	if p, err := lookPath("pgbouncer", "/usr/sbin/pgbouncer"); err == nil {
		e.pgbouncerBin = p
		e.bouncerVersion, e.bouncerPrepared = pgbouncerVersion(p)
	}
	if _, err := exec.LookPath("pgbench"); err != nil {
		return cleanup, fmt.Errorf("pgbench not found (apt-get install -y postgresql-client): %w", err)
	}

	e.pgbridgeBin, e.loadgenBin = e.opts.PgbridgeBin, e.opts.LoadgenBin
	type binary struct {
		path *string
		pkg  string
	}
	bins := []binary{{&e.pgbridgeBin, "./cmd/pgbridge"}, {&e.loadgenBin, "./bench/cmd/loadgen"}}
	if slices.Contains(e.opts.Targets, report.GoRelay) || slices.Contains(e.opts.Targets, report.GoRelayEpoll) {
		bins = append(bins, binary{&e.gorelayBin, "./bench/cmd/gorelay"})
	}
	for _, b := range bins {
		if *b.path != "" {
			if *b.path, err = filepath.Abs(*b.path); err != nil {
				return cleanup, err
			}
			continue
		}
		*b.path = filepath.Join(e.dir, filepath.Base(b.pkg))
		e.logf("building %s", b.pkg)
		if err := goBuild(ctx, b.pkg, *b.path); err != nil {
			return cleanup, err
		}
	}

	e.logf("starting PostgreSQL")
	e.pg, err = pgtest.Start(
		pgtest.WithConfig("max_connections", strconv.Itoa(max(e.opts.DirectMaxClients, 400)+200)),
		pgtest.WithConfig("shared_buffers", "256MB"),
	)
	if err != nil {
		return cleanup, err
	}
	undo = append(undo, func() { _ = e.pg.Close() })
	for i := range e.opts.Tenants {
		name := "t" + strconv.Itoa(i)
		t, err := e.pg.CreateTenant(ctx, name)
		if err != nil {
			return cleanup, err
		}
		tn := tenant{Tenant: t, AppUser: name + "_app", AppPassword: rand.Text()}
		if tn.RoleVerifier, err = roleVerifier(ctx, e.pg, t.User); err != nil {
			return cleanup, err
		}
		e.tenants = append(e.tenants, tn)
	}
	for i, t := range e.tenants {
		scale := 1
		if i == 0 {
			scale = e.opts.Scale
		}
		e.logf("pgbench -i -s %d for tenant %s", scale, t.Name)
		res, err := runBounded(ctx, "pgbench -i", e.pgbenchCmd(e.directTarget().login(i), "-i", "-q", "-s", strconv.Itoa(scale)),
			nil, 10*time.Minute)
		if err != nil || res.exitCode != 0 {
			return cleanup, fmt.Errorf("pgbench -i for %s: %v\n%s", t.Name, err, lastLines(res.stderr, 5))
		}
	}
	return cleanup, nil
}

// lookPath finds name on PATH, else at fallback (Debian installs PgBouncer
// in /usr/sbin, which is not on every user's PATH).
func lookPath(name, fallback string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	if fi, ferr := os.Stat(fallback); ferr == nil && fi.Mode()&0o111 != 0 {
		return fallback, nil
	}
	return "", err
}

// goBuild builds pkg of the module the harness runs in.
func goBuild(ctx context.Context, pkg, out string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return fmt.Errorf("building %s needs the go tool inside the pgbridge module (or pass the binary): %v", pkg, err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// raiseNoFile lifts the open-files limit of the harness, which its
// children (proxies, load generator) inherit, to what the idle scenarios
// need. It returns a note for the report when it cannot.
func raiseNoFile(o Options) string {
	need := uint64(2000)
	for _, n := range o.IdleClients {
		need = max(need, uint64(n)+2000)
	}
	need = max(need, uint64(o.StormClients)+2000)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return "could not read RLIMIT_NOFILE: " + err.Error()
	}
	return raiseLimit(&lim, &lim.Cur, &lim.Max, need)
}

// raiseLimit raises lim, whose fields are cur and hard, to need, and the
// hard limit too when it may (as root). It is generic because Rlimit's
// fields are uint64 on Linux and int64 on the BSDs.
func raiseLimit[T int64 | uint64](lim *syscall.Rlimit, cur, hard *T, need uint64) string {
	n := T(need)
	if *cur >= n {
		return ""
	}
	if *hard < n { // only root can raise the hard limit
		old := *lim
		*cur, *hard = n, n
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, lim) == nil {
			return ""
		}
		*lim = old
	}
	*cur = min(n, *hard)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, lim); err != nil {
		return "could not raise RLIMIT_NOFILE: " + err.Error()
	}
	if *cur < n {
		return fmt.Sprintf("RLIMIT_NOFILE is %d (hard limit), below the %d the idle scenarios need: their biggest runs may fail", *cur, need)
	}
	return ""
}

// machine describes the host and the software under test.
func (e *env) machine(ctx context.Context) report.Machine {
	m := report.Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if mm := regexp.MustCompile(`(?m)^model name\s*:\s*(.+)$`).FindSubmatch(b); mm != nil {
			m.CPUModel = strings.TrimSpace(string(mm[1]))
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if mm := regexp.MustCompile(`(?m)^MemTotal:\s*([0-9]+) kB`).FindSubmatch(b); mm != nil {
			kb, _ := strconv.ParseInt(string(mm[1]), 10, 64)
			m.MemoryMiB = kb / 1024
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAverage = strings.Join(f[:3], " ")
		}
	}
	version := func(name string, args ...string) string {
		out, err := exec.CommandContext(ctx, name, args...).Output()
		if err != nil {
			return ""
		}
		s := firstLine(string(out))
		if i := strings.LastIndex(s, ") "); i >= 0 && strings.HasPrefix(s, name+" (") {
			s = s[i+2:] // "pgbench (PostgreSQL) 15.18 (Debian ...)" -> "15.18 (Debian ...)"
		}
		return strings.TrimSpace(s)
	}
	m.Postgres = version(filepath.Join(e.pg.BinDir, "postgres"), "--version")
	m.Postgres = strings.TrimPrefix(m.Postgres, "postgres (PostgreSQL) ")
	m.Pgbench = version("pgbench", "--version")
	m.PgBouncer = e.bouncerVersion
	if out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.PgbridgeCommit = strings.TrimSpace(string(out))
		if exec.CommandContext(ctx, "git", "diff", "--quiet", "HEAD", "--").Run() != nil {
			m.PgbridgeCommit += " (with uncommitted changes)"
		}
	}
	return m
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func safeName(s string) string {
	s = unsafeChars.ReplaceAllString(s, "-")
	if s == "" {
		return "host"
	}
	return s
}

// errExited is the error of runs whose proxy is gone.
var errExited = errors.New("the proxy process has exited")
