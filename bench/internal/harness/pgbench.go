package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/pgbridge/pgbridge/bench/internal/report"
)

var (
	reTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \((without initial connection time|including reconnection times)\)`)
	reProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	reFailed    = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
	reLatency   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	reConnTime  = regexp.MustCompile(`(?m)^(?:initial|average) connection time = ([0-9.]+) ms`)
	reAborted   = regexp.MustCompile(`(?m)^pgbench: error: client [0-9]+ (?:script [0-9]+ )?aborted`)
	reError     = regexp.MustCompile(`(?m)^pgbench: error: (.*)$`)
)

// parsePgbench reads the summary pgbench (PostgreSQL 15 and later) prints
// on stdout and the errors it prints on stderr. A run that printed no tps
// line failed as a whole; the error carries the first error message.
func parsePgbench(stdout, stderr string) (*report.PgbenchResult, error) {
	r := &report.PgbenchResult{}
	r.Aborted = len(reAborted.FindAllString(stderr, -1))
	if m := reError.FindStringSubmatch(stderr); m != nil {
		r.FirstError = strings.TrimSpace(m[1])
	}
	m := reTPS.FindStringSubmatch(stdout)
	if m == nil && r.FirstError == "" {
		if p := reProcessed.FindStringSubmatch(stdout); p != nil && p[1] == "0" {
			return nil, errors.New("pgbench completed no transaction within its run (still connecting its clients?)")
		}
	}
	if m == nil {
		msg := r.FirstError
		if msg == "" {
			msg = lastLines(stderr+stdout, 3)
		}
		return nil, fmt.Errorf("pgbench printed no result: %s", msg)
	}
	r.TPS, _ = strconv.ParseFloat(m[1], 64)
	if m := reProcessed.FindStringSubmatch(stdout); m != nil {
		r.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reFailed.FindStringSubmatch(stdout); m != nil {
		r.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reLatency.FindStringSubmatch(stdout); m != nil {
		r.LatencyAvgMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reConnTime.FindStringSubmatch(stdout); m != nil {
		r.ConnTimeMs, _ = strconv.ParseFloat(m[1], 64)
	}
	return r, nil
}

// parseLatencyLog reads a pgbench per-transaction log (-l) and returns the
// latencies of the transactions it lists, in milliseconds. Each line is
// "client_id transaction_no time script_no time_epoch time_us [...]", with
// time in microseconds, or "failed"/"skipped" for transactions that did not
// complete, which are left out.
func parseLatencyLog(r io.Reader, into []float64) ([]float64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			if len(f) == 0 {
				continue
			}
			return into, fmt.Errorf("pgbench log: short line %q", sc.Text())
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			if f[2] == "failed" || f[2] == "skipped" {
				continue
			}
			return into, fmt.Errorf("pgbench log: bad latency in %q", sc.Text())
		}
		into = append(into, float64(us)/1000)
	}
	return into, sc.Err()
}

// readLatencyLogs reads every log file pgbench wrote with prefix (one per
// thread: prefix.<pid> and prefix.<pid>.<n>).
func readLatencyLogs(prefix string) ([]float64, error) {
	files, err := filepath.Glob(prefix + ".*")
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, errors.New("pgbench wrote no transaction log")
	}
	var lat []float64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		lat, err = parseLatencyLog(fh, lat)
		fh.Close()
		if err != nil {
			return nil, err
		}
	}
	return lat, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " / ")
}
