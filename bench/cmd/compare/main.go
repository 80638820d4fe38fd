// Command compare is pgbridge's load-test harness (`make bench`,
// `make bench-quick`). It starts a throwaway PostgreSQL with Bridge
// tenants, pgbridge and PgBouncer in front of it, runs every scenario
// against direct PostgreSQL, PgBouncer and pgbridge with the targets
// interleaved round by round, and writes bench/results/<date>-<host>.md
// (with one SVG chart per scenario) and .json. See bench/README.md.
//
//	go run ./bench/cmd/compare -quick
//	go run ./bench/cmd/compare -scenarios 'select-simple-*' -duration 10s -rounds 3
//	go run ./bench/cmd/compare -render bench/results/2026-11-26-vm.json
//
// -render writes a report's Markdown and charts again from its JSON file,
// without running anything (after a change to the report's layout).
//
// Ctrl-C stops the run: everything it started is stopped, and the report
// holds what was measured until then.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgbridge/pgbridge/bench/internal/harness"
	"github.com/pgbridge/pgbridge/bench/internal/report"
)

func main() {
	var o harness.Options
	var targets, scenarios, idle string
	flag.BoolVar(&o.Quick, "quick", false, "short version: one round of 2 s runs (about 2 minutes)")
	flag.StringVar(&o.PgbridgeBin, "pgbridge", "", "pgbridge binary (default: build ./cmd/pgbridge)")
	flag.StringVar(&o.LoadgenBin, "loadgen", "", "loadgen binary (default: build ./bench/cmd/loadgen)")
	flag.StringVar(&o.OutDir, "out", "bench/results", "directory for the report")
	flag.StringVar(&o.Name, "name", "", "report base name (default <date>-<host>, with -quick appended for quick runs)")
	flag.StringVar(&targets, "targets", "direct,pgbouncer,pgbridge", "targets in the order each round runs them (gorelay: a byte relay in Go with a goroutine per connection, the floor of a proxy built like pgbridge; gorelay-epoll: the same relay on one epoll loop, built like PgBouncer)")
	flag.StringVar(&scenarios, "scenarios", "", "comma-separated scenario names to run, a trailing * matches a prefix (default: all)")
	flag.IntVar(&o.Tenants, "tenants", 4, "Bridge tenants")
	flag.IntVar(&o.PoolSize, "pool-size", 20, "backend pool size per tenant, both proxies")
	flag.DurationVar(&o.RunTime, "duration", 0, "length of one run (default 20s, quick 2s)")
	flag.IntVar(&o.Rounds, "rounds", 0, "rounds (default 2, quick 1)")
	flag.IntVar(&o.Scale, "scale", 10, "pgbench scale of the first tenant")
	flag.Float64Var(&o.SamplingRate, "sampling-rate", 0.2, "share of pgbench transactions logged for latency percentiles")
	flag.StringVar(&idle, "idle", "1000,10000", "idle-client counts, comma-separated")
	flag.IntVar(&o.StormClients, "storm", 500, "clients in the connection storm")
	flag.IntVar(&o.NoisyClients, "noisy-clients", 32, "connections of the noisy tenant")
	flag.IntVar(&o.QuietClients, "quiet-clients", 2, "connections of each quiet tenant")
	flag.IntVar(&o.MaxActive, "max-active", 0, "pgbridge's backend.max_active_transactions in the noisy-neighbour scenario (0: twice the CPUs, -1: none)")
	flag.Float64Var(&o.QuietRate, "quiet-rate", 50, "queries per second of each quiet tenant")
	flag.DurationVar(&o.Timeout, "timeout", 0, "limit for the whole run (default 45m, quick 4m)")
	flag.BoolVar(&o.KeepDir, "keep", false, "keep the work directory with the generated configs and proxy logs")
	render := flag.String("render", "", "write the Markdown and charts of this JSON report again, and run nothing")
	flag.Parse()
	if *render != "" {
		if err := rerender(*render); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			os.Exit(1)
		}
		return
	}
	o.Targets = splitList(targets)
	o.Scenarios = splitList(scenarios)
	for _, s := range splitList(idle) {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "compare: bad -idle count %q\n", s)
			os.Exit(2)
		}
		o.IdleClients = append(o.IdleClients, n)
	}
	if o.IdleClients == nil {
		o.IdleClients = []int{} // -idle '' runs no idle scenario
	}
	o.Log = os.Stderr

	// The first Ctrl-C (or SIGTERM) cancels the run, which stops every
	// child and writes what was measured; further signals are ignored
	// while that happens, so cleanup is not cut short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o harness.Options) error {
	start := time.Now()
	r, err := harness.Run(ctx, o)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return err
	}
	md, err := report.Write(o.OutDir, r)
	if err != nil {
		return err
	}
	// Print the summary table of the report.
	text := report.Markdown(r)
	if i := bytes.Index(text, []byte("## Summary")); i >= 0 {
		rest := text[i:]
		if j := bytes.Index(rest[3:], []byte("\n## ")); j >= 0 {
			rest = rest[:j+3]
		}
		fmt.Printf("%s\n", rest)
	}
	fmt.Printf("report: %s (and .json), %s\n", md, time.Since(start).Round(time.Second))
	if r.Interrupted != "" {
		return fmt.Errorf("run incomplete: %s", r.Interrupted)
	}
	return nil
}

// rerender reads a JSON report and writes it out again next to itself.
func rerender(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r report.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if r.Name+".json" != filepath.Base(path) {
		return fmt.Errorf("%s holds report %q; its files would not match", path, r.Name)
	}
	md, err := report.Write(filepath.Dir(path), &r)
	if err != nil {
		return err
	}
	fmt.Println("report:", md)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
