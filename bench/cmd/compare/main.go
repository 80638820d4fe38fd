// Command compare measures pgbench throughput directly against PostgreSQL,
// through PgBouncer (transaction mode) and through pgbridge (transaction
// mode), interleaving the targets round by round on one machine, and prints
// a Markdown table of the median tps per target.
//
//	go run ./bench/cmd/compare -pgbridge bin/pgbridge -mode simple -clients 16 -duration 20s -rounds 2
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgbridge/pgbridge/internal/pgtest"
)

func main() {
	bin := flag.String("pgbridge", "bin/pgbridge", "pgbridge binary")
	mode := flag.String("mode", "simple", "pgbench -M protocol: simple, extended or prepared")
	clients := flag.Int("clients", 16, "pgbench clients (-c)")
	threads := flag.Int("threads", 2, "pgbench threads (-j)")
	dur := flag.Duration("duration", 20*time.Second, "length of each pgbench run")
	rounds := flag.Int("rounds", 2, "rounds; each round runs every target once")
	poolSize := flag.Int("pool-size", 16, "backend pool size for both proxies")
	targets := flag.String("targets", "direct,pgbouncer,pgbridge", "targets, comma-separated")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "pgbridge writes a CPU profile here")
	flag.Parse()
	if err := run(*bin, *mode, *clients, *threads, *dur, *rounds, *poolSize, strings.Split(*targets, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

var cpuProfile string

type target struct {
	name string
	port int
	user string
	pass string
}

func run(bin, mode string, clients, threads int, dur time.Duration, rounds, poolSize int, names []string) error {
	c, err := pgtest.Start(pgtest.WithConfig("max_connections", "300"))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	t, err := c.CreateTenant(ctx, "bench")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pgbridge-compare-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if out, err := pgbenchCmd(c.Port, t.User, t.Password, t.Database, "-i", "-s", "1", "-q").CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}

	all := map[string]target{"direct": {"direct", c.Port, t.User, t.Password}}
	var stops []func()
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	for _, n := range names {
		switch n {
		case "pgbridge":
			port, stop, err := startPgbridge(bin, dir, c.Port, t, poolSize)
			if err != nil {
				return err
			}
			stops = append(stops, stop)
			all[n] = target{n, port, "bench_app", "bench-secret"}
		case "pgbouncer":
			port, stop, err := startPgbouncer(dir, c.Port, t, poolSize)
			if err != nil {
				return err
			}
			stops = append(stops, stop)
			all[n] = target{n, port, t.User, t.Password}
		}
	}
	results := map[string][]float64{}
	for r := 0; r < rounds; r++ {
		for _, n := range names {
			tg := all[n]
			args := []string{"-S", "-M", mode, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(int(dur.Seconds())), "-n"}
			out, err := pgbenchCmd(tg.port, tg.user, tg.pass, t.Database, args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s: pgbench: %v\n%s", n, err, out)
			}
			tps, failed := parse(string(out))
			if failed != 0 {
				return fmt.Errorf("%s: %d failed transactions\n%s", n, failed, out)
			}
			fmt.Fprintf(os.Stderr, "round %d %-10s %10.0f tps\n", r+1, n, tps)
			results[n] = append(results[n], tps)
		}
	}
	host, _ := os.Hostname()
	fmt.Printf("pgbench -S -M %s -c %d -j %d -T %d, %d interleaved rounds, pool size %d, host %s, %s\n\n",
		mode, clients, threads, int(dur.Seconds()), rounds, poolSize, host, time.Now().UTC().Format(time.RFC3339))
	fmt.Println("| target | median tps | runs | vs direct |")
	fmt.Println("|---|---|---|---|")
	base := median(results["direct"])
	for _, n := range names {
		m := median(results[n])
		ratio := "-"
		if base > 0 {
			ratio = fmt.Sprintf("%.2fx", m/base)
		}
		fmt.Printf("| %s | %.0f | %s | %s |\n", n, m, fmtRuns(results[n]), ratio)
	}
	return nil
}

func pgbenchCmd(port int, user, pass, db string, args ...string) *exec.Cmd {
	a := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", user}, args...)
	a = append(a, db)
	cmd := exec.Command("pgbench", a...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pass, "PGSSLMODE=disable")
	return cmd
}

var (
	tpsRE    = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	failedRE = regexp.MustCompile(`number of failed transactions: ([0-9]+)`)
)

func parse(out string) (tps float64, failed int) {
	if m := tpsRE.FindStringSubmatch(out); m != nil {
		tps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := failedRE.FindStringSubmatch(out); m != nil {
		failed, _ = strconv.Atoi(m[1])
	}
	return tps, failed
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRuns(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ", ")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startPgbridge(bin, dir string, pgPort int, t pgtest.Tenant, poolSize int) (int, func(), error) {
	port, err := freePort()
	if err != nil {
		return 0, nil, err
	}
	cfg := fmt.Sprintf(`listen: {address: "127.0.0.1:%d"}
backend: {host: 127.0.0.1, port: %d, tls: {mode: disable}, max_connections: %d}
log: {level: warn, format: json}
defaults: {pool_mode: transaction, pool_size: %d, max_client_connections: 1000}
tenants:
  bench:
    database: %s
    backend_user: %s
    backend_password: %q
    users: {bench_app: {password: bench-secret}}
`, port, pgPort, poolSize, poolSize, t.Database, t.User, t.Password)
	path := filepath.Join(dir, "pgbridge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return 0, nil, err
	}
	args := []string{"serve", "--config", path}
	if cpuProfile != "" {
		args = append(args, "--cpuprofile", cpuProfile)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop := func() { stopProcess(cmd, os.Interrupt) }
	if err := waitPort(port); err != nil {
		stop()
		return 0, nil, err
	}
	return port, stop, nil
}

func startPgbouncer(dir string, pgPort int, t pgtest.Tenant, poolSize int) (int, func(), error) {
	if _, err := exec.LookPath("pgbouncer"); err != nil {
		return 0, nil, errors.New("pgbouncer not installed (apt-get install -y pgbouncer)")
	}
	port, err := freePort()
	if err != nil {
		return 0, nil, err
	}
	ini := fmt.Sprintf(`[databases]
%s = host=127.0.0.1 port=%d dbname=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s/userlist.txt
pool_mode = transaction
default_pool_size = %d
max_client_conn = 1000
`, t.Database, pgPort, t.Database, port, dir, poolSize)
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o644); err != nil {
		return 0, nil, err
	}
	ul := fmt.Sprintf("%q %q\n", t.User, t.Password)
	if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(ul), 0o644); err != nil {
		return 0, nil, err
	}
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	var cmd *exec.Cmd
	if os.Geteuid() == 0 { // pgbouncer refuses to run as root
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", "pgbouncer"}, args...)...)
	} else {
		cmd = exec.Command("pgbouncer", args...)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop := func() { stopProcess(cmd, syscall.SIGTERM) } // immediate shutdown
	if err := waitPort(port); err != nil {
		stop()
		return 0, nil, err
	}
	return port, stop, nil
}

// stopProcess signals a process we started and waits for it, killing it if
// it has not exited after 10 s.
func stopProcess(cmd *exec.Cmd, sig os.Signal) {
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitPort(port int) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on port %d", port)
}
