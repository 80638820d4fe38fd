package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgbridge/pgbridge/bench/internal/load"
	"github.com/pgbridge/pgbridge/bench/internal/procstat"
	"github.com/pgbridge/pgbridge/bench/internal/report"
)

// runScenario starts fresh proxies (so that memory peaks belong to this
// scenario), runs every round with the targets interleaved, and stops the
// proxies again.
func (e *env) runScenario(ctx context.Context, sc *scenario, s *report.Scenario) {
	e.logf("scenario %s: %s", s.Name, s.Title)
	targets := map[string]*target{}
	startErr := map[string]string{}
	for _, name := range e.opts.Targets {
		if s.Unsupported[name] != "" || s.NotApplicable[name] != "" {
			continue
		}
		if name == report.Direct {
			targets[name] = e.directTarget()
			continue
		}
		t, err := e.startTarget(ctx, sc, name, s.Name)
		if err != nil {
			startErr[name] = err.Error()
			e.logf("  %s: %v", name, err)
			continue
		}
		targets[name] = t
	}
	defer func() {
		for _, t := range targets {
			if t.proc != nil {
				t.proc.stop(syscall.SIGTERM, 10*time.Second)
			}
		}
	}()

	for round := 1; round <= e.opts.Rounds; round++ {
		for _, name := range e.opts.Targets {
			if ctx.Err() != nil {
				return
			}
			if s.Unsupported[name] != "" || s.NotApplicable[name] != "" {
				continue
			}
			t := targets[name]
			if t != nil && t.proc != nil && s.Kind == report.KindIdle && round > 1 {
				// Memory growth is only meaningful in a fresh process: a
				// second round would reuse the first round's freed memory.
				t.proc.stop(syscall.SIGTERM, 10*time.Second)
				targets[name] = nil
				nt, err := e.startTarget(ctx, sc, name, fmt.Sprintf("%s-r%d", s.Name, round))
				if err != nil {
					startErr[name] = err.Error()
				} else {
					targets[name] = nt
				}
				t = targets[name]
			}
			if t == nil {
				s.Runs = append(s.Runs, report.Run{Target: name, Round: round, Error: firstLine(startErr[name])})
				continue
			}
			variants := []string{""}
			if s.Kind == report.KindNoisy {
				variants = []string{report.VariantBaseline, report.VariantNoisy}
			}
			for _, v := range variants {
				run := e.runOne(ctx, sc, t, round, v)
				if ctx.Err() != nil {
					return // a run cut short by Ctrl-C or the time limit is no measurement
				}
				s.Runs = append(s.Runs, run)
				e.logf("  round %d %-9s %s", round, name, summary(s.Kind, run))
			}
		}
	}
}

// runOne runs one target once and measures its proxy around the run.
func (e *env) runOne(ctx context.Context, sc *scenario, t *target, round int, variant string) report.Run {
	run := report.Run{Target: t.name, Round: round, Variant: variant}
	if t.proc != nil && t.proc.exited() {
		run.Error = fmt.Sprintf("%v: %v %s", errExited, t.proc.err, oneLine(t.proc.logTail(3)))
		return run
	}
	var m *meter
	if t.proc != nil {
		m = startMeter(t.proc.pid())
	}
	var ops int64
	var err error
	switch sc.meta.Kind {
	case report.KindPgbench:
		run.Pgbench, err = e.runPgbench(ctx, sc, t)
		if run.Pgbench != nil {
			ops = run.Pgbench.Transactions
		}
	case report.KindIdle:
		run.Idle, err = e.runIdle(ctx, sc, t)
	case report.KindStorm:
		run.Storm, err = e.runStorm(ctx, t)
		if run.Storm != nil {
			ops = int64(run.Storm.Connected)
		}
	case report.KindNoisy:
		run.Noisy, err = e.runNoisy(ctx, t, variant == report.VariantBaseline)
		if run.Noisy != nil {
			for _, tr := range run.Noisy.Tenants {
				ops += tr.Queries
			}
		}
	}
	if m != nil {
		run.Proxy = m.stop(ops)
	}
	if err != nil {
		run.Error = oneLine(err.Error())
		if t.proc != nil && t.proc.exited() {
			run.Error += "; " + t.proc.name + " exited: " + oneLine(t.proc.logTail(3))
		}
	}
	return run
}

// meter measures a proxy process over one run.
type meter struct {
	pid       int
	cpu0      time.Duration
	rss0      int64
	peakReset bool
}

func startMeter(pid int) *meter {
	m := &meter{pid: pid}
	m.peakReset = procstat.ResetPeak(pid) == nil
	m.cpu0, _ = procstat.CPU(pid)
	if mem, err := procstat.Memory(pid); err == nil {
		m.rss0 = mem.RSS
	}
	return m
}

func (m *meter) stop(ops int64) *report.ProxyUsage {
	u := &report.ProxyUsage{PID: m.pid, PeakSinceRun: m.peakReset, RSSAtStartKiB: m.rss0}
	if cpu, err := procstat.CPU(m.pid); err == nil {
		u.CPUSeconds = (cpu - m.cpu0).Seconds()
		if ops > 0 {
			u.CPUPerOpMicros = u.CPUSeconds / float64(ops) * 1e6
		}
	}
	if mem, err := procstat.Memory(m.pid); err == nil {
		u.PeakRSSKiB = mem.HWM
	}
	return u
}

// pgbenchCmd is a pgbench command line for login l.
func (e *env) pgbenchCmd(l load.Login, args ...string) *exec.Cmd {
	a := append([]string{"-h", l.Host, "-p", strconv.Itoa(l.Port), "-U", l.User}, args...)
	a = append(a, l.Database)
	cmd := exec.Command("pgbench", a...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "PGPASSWORD="+l.Password, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=30",
		"PGAPPNAME=pgbench")
	return cmd
}

func (e *env) runPgbench(ctx context.Context, sc *scenario, t *target) (*report.PgbenchResult, error) {
	p := sc.pgbench
	secs := p.seconds(&e.opts)
	logDir, err := os.MkdirTemp(e.dir, "pgbench-log-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(logDir)
	prefix := filepath.Join(logDir, "txn")
	args := append([]string(nil), p.args...)
	args = append(args, "-c", strconv.Itoa(p.clients), "-j", strconv.Itoa(p.threads), "-T", strconv.Itoa(secs), "-n",
		"-l", "--log-prefix="+prefix)
	rate := e.opts.SamplingRate
	if p.samplingRate > 0 {
		rate = p.samplingRate
	}
	if rate < 1 {
		args = append(args, "--sampling-rate="+strconv.FormatFloat(rate, 'g', -1, 64))
	}
	// Connecting 400 clients directly takes a while; allow a minute more.
	res, err := runBounded(ctx, "pgbench", e.pgbenchCmd(t.login(0), args...), nil, time.Duration(secs)*time.Second+time.Minute)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, lastLines(res.stderr, 2))
	}
	r, err := parsePgbench(res.stdout, res.stderr)
	if err != nil {
		return nil, err
	}
	lat, err := readLatencyLogs(prefix)
	if err != nil && r.Transactions > 0 {
		return nil, err
	}
	r.Latency = report.Summarize(lat)
	return r, nil
}

func (e *env) runStorm(ctx context.Context, t *target) (*report.StormResult, error) {
	ev, err := e.runLoadgen(ctx, load.Spec{Mode: load.ModeStorm, Logins: t.logins, Clients: e.opts.StormClients,
		ConnectTimeoutSeconds: 60}, 3*time.Minute, nil)
	if err != nil {
		return nil, err
	}
	return ev.Storm, nil
}

func (e *env) runNoisy(ctx context.Context, t *target, baseline bool) (*report.NoisyResult, error) {
	spec := load.Spec{
		Mode: load.ModeNoisy, Logins: t.logins, Seconds: e.opts.RunTime.Seconds(),
		NoisyTenant: e.tenants[0].Name, NoisyClients: e.opts.NoisyClients,
		QuietClients: e.opts.QuietClients, QuietRate: e.opts.QuietRate, Baseline: baseline,
		Query: load.DefaultQuery, MaxArg: 100000, // every tenant has at least scale 1
	}
	limit := e.opts.RunTime + 2*time.Minute
	if baseline {
		ev, err := e.runLoadgen(ctx, spec, limit, nil)
		if err != nil {
			return nil, err
		}
		return ev.Noisy, nil
	}
	// The noisy tenant and the quiet ones run in two processes, as two
	// applications would: in one process the quiet clients' latency would
	// include waiting behind the noisy clients in the load generator's own
	// scheduler. Both clocks start at the same instant, after the logins.
	start := time.Now().Add(noisyConnectTime)
	noisy, quiet := spec, spec
	noisy.Logins, noisy.NoisyOnly, noisy.StartAt = t.logins[:1], true, start.UnixNano()
	quiet.Baseline, quiet.StartAt = true, start.UnixNano()
	type result struct {
		ev  load.Event
		err error
	}
	noisyDone := make(chan result, 1)
	go func() {
		ev, err := e.runLoadgen(ctx, noisy, limit, nil)
		noisyDone <- result{ev, err}
	}()
	qev, qerr := e.runLoadgen(ctx, quiet, limit, nil)
	n := <-noisyDone
	switch {
	case n.err != nil:
		return nil, fmt.Errorf("noisy tenant: %w", n.err)
	case qerr != nil:
		return nil, fmt.Errorf("quiet tenants: %w", qerr)
	case n.ev.Noisy == nil || qev.Noisy == nil:
		return nil, errors.New("loadgen gave no noisy-neighbour result")
	}
	res := qev.Noisy
	res.Tenants = append(n.ev.Noisy.Tenants, res.Tenants...)
	return res, nil
}

// noisyConnectTime is how long the two load generators of a
// noisy-neighbour run get to log in before their clocks start.
const noisyConnectTime = 5 * time.Second

// runIdle connects the idle clients, waits for things to settle, and reads
// the memory the clients cost: the proxy's RSS growth, or for direct the
// growth of the PSS of PostgreSQL's processes.
func (e *env) runIdle(ctx context.Context, sc *scenario, t *target) (*report.IdleResult, error) {
	memory := func() (int64, string, error) {
		if t.proc != nil {
			m, err := procstat.Memory(t.proc.pid())
			return m.RSS, report.DisplayName(t.name) + " RSS", err
		}
		pid, err := e.postmasterPID()
		if err != nil {
			return 0, "", err
		}
		pss, err := procstat.TreePSS(pid)
		return pss, "PostgreSQL backends' PSS", err
	}
	before, _, err := memory()
	if err != nil {
		return nil, err
	}
	var with int64
	var source string
	var memErr error
	spec := load.Spec{Mode: load.ModeIdle, Logins: t.logins, Clients: sc.idleClients, Parallel: e.opts.IdleParallel,
		HoldSeconds: 120, ConnectTimeoutSeconds: 60}
	ev, err := e.runLoadgen(ctx, spec, 5*time.Minute, func(*report.IdleResult) {
		select {
		case <-time.After(e.opts.IdleSettle):
		case <-ctx.Done():
		}
		with, source, memErr = settledMemory(ctx, memory, time.Second, idleSettleMax)
	})
	if err != nil {
		return nil, err
	}
	if memErr != nil {
		return nil, memErr
	}
	r := ev.Idle
	r.MemoryBeforeKiB, r.MemoryWithKiB, r.MemorySource = before, with, source
	if r.Connected > 0 {
		r.MemoryPerClientKiB = float64(with-before) / float64(r.Connected)
	}
	return r, nil
}

// idleSettleMax bounds how long settledMemory waits, after the minimum
// settle time, for the memory reading to stop falling. The load generator
// holds its idle clients for 120 s at most.
const idleSettleMax = 30 * time.Second

// settledMemory reads memory every step until a reading is no more than 1%
// (or 64 KiB, whichever is more) below the one a step before, or until
// limit has passed,
// and returns the last reading. A Go proxy's RSS right after 10,000 logins
// still holds the garbage of the logins until the runtime's scavenger
// returns it to the kernel, which takes seconds: pgbridge read 19 KiB per
// idle client after 1 s and 8 KiB after 3 s in the same setup. What an idle
// client costs is the level the RSS settles at, not the point on its way
// down that a fixed wait happens to hit.
func settledMemory(ctx context.Context, memory func() (int64, string, error), step, limit time.Duration) (int64, string, error) {
	prev, source, err := memory()
	if err != nil {
		return 0, "", err
	}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-time.After(step):
		case <-ctx.Done():
			return prev, source, nil
		}
		cur, src, err := memory()
		if err != nil {
			return 0, "", err
		}
		stable := memoryStable(prev, cur)
		prev, source = cur, src
		if stable {
			break
		}
	}
	return prev, source, nil
}

// memoryStable reports whether a memory reading cur (KiB), taken one step
// after prev, has stopped falling: it is at most 1% or 64 KiB (whichever
// is more) lower, or higher.
func memoryStable(prev, cur int64) bool {
	return prev-cur <= max(prev/100, 64)
}

// postmasterPID reads the server's PID from its data directory.
func (e *env) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(e.pg.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(firstLine(string(b))))
}

// runLoadgen runs the load generator with spec and returns its result
// event. For the idle mode, connected is called once the clients are
// connected; they are released when it returns.
func (e *env) runLoadgen(ctx context.Context, spec load.Spec, limit time.Duration, connected func(*report.IdleResult)) (load.Event, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return load.Event{}, err
	}
	// Plain pipes, owned here: the process may be waited for while its
	// last output is still being read.
	inR, inW, err := os.Pipe()
	if err != nil {
		return load.Event{}, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return load.Event{}, err
	}
	defer outR.Close()
	var stderr strings.Builder
	cmd := exec.Command(e.loadgenBin)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, &stderr
	p, err := startProc("loadgen", cmd, "")
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		return load.Event{}, err
	}
	defer p.stop(syscall.SIGTERM, 5*time.Second)
	stdinOpen := true
	closeStdin := func() {
		if stdinOpen {
			inW.Close()
			stdinOpen = false
		}
	}
	defer closeStdin()
	if _, err := inW.Write(append(js, '\n')); err != nil {
		return load.Event{}, fmt.Errorf("loadgen: %w", err)
	}
	if spec.Mode != load.ModeIdle {
		closeStdin()
	}

	timer := time.AfterFunc(limit, func() { p.stop(syscall.SIGTERM, 3*time.Second) })
	defer timer.Stop()
	stopOnCancel := context.AfterFunc(ctx, func() { p.stop(syscall.SIGTERM, 3*time.Second) })
	defer stopOnCancel()

	var result *load.Event
	sc := bufio.NewScanner(outR)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev load.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return load.Event{}, fmt.Errorf("loadgen printed %q: %w", sc.Text(), err)
		}
		switch ev.Event {
		case load.EventConnected:
			if connected != nil {
				connected(ev.Idle)
			}
			closeStdin()
		case load.EventResult:
			result = &ev
		case load.EventError:
			return load.Event{}, fmt.Errorf("loadgen: %s", ev.Error)
		}
	}
	<-p.done
	if ctx.Err() != nil {
		return load.Event{}, ctx.Err()
	}
	if result == nil {
		return load.Event{}, fmt.Errorf("loadgen ended without a result (%v): %s", p.err, lastLines(stderr.String(), 3))
	}
	return *result, nil
}

// summary is the progress line of one run.
func summary(kind string, r report.Run) string {
	if r.Error != "" {
		return "failed: " + r.Error
	}
	var s string
	switch {
	case r.Pgbench != nil:
		p := r.Pgbench
		s = fmt.Sprintf("%9.0f tps  p50 %.2f ms  p99 %.2f ms  errors %d", p.TPS, p.Latency.P50, p.Latency.P99, p.Errors())
	case r.Idle != nil:
		s = fmt.Sprintf("%d/%d connected in %.1f s, %.1f KiB per client (%s), errors %d",
			r.Idle.Connected, r.Idle.Clients, r.Idle.ConnectSeconds, r.Idle.MemoryPerClientKiB, r.Idle.MemorySource, r.Idle.Errors)
	case r.Storm != nil:
		s = fmt.Sprintf("%d/%d connected, all after %.2f s, all answered after %.2f s, errors %d",
			r.Storm.Connected, r.Storm.Clients, r.Storm.AllConnectedSeconds, r.Storm.AllQueriedSeconds, r.Storm.Errors)
	case r.Noisy != nil:
		var parts []string
		for _, t := range r.Noisy.Tenants {
			parts = append(parts, fmt.Sprintf("%s %.0f q/s p99 %.2f ms", t.Tenant, t.QPS, t.Latency.P99))
		}
		s = r.Variant + ": " + strings.Join(parts, ", ")
	}
	if r.Proxy != nil && r.Proxy.CPUPerOpMicros > 0 {
		s += fmt.Sprintf("  proxy CPU %.1f µs/op", r.Proxy.CPUPerOpMicros)
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
