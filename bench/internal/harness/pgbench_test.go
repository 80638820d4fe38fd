package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Outputs of pgbench 15.18.
const (
	outSelect = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 17705
number of failed transactions: 0 (0.000%)
latency average = 0.440 ms
initial connection time = 60.528 ms
tps = 9100.231039 (without initial connection time)
`
	outConnect = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 163
number of failed transactions: 0 (0.000%)
latency average = 49.778 ms
average connection time = 24.393 ms
tps = 80.357279 (including reconnection times)
`
	outPartlyAborted = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: prepared
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 5000
number of failed transactions: 3 (0.060%)
latency average = 0.700 ms
initial connection time = 20.000 ms
tps = 2500.5 (without initial connection time)
`
	errPartlyAborted = `pgbench: error: client 3 script 0 aborted in command 1 query 0: ERROR:  prepared statement "P_0" does not exist
pgbench: error: client 7 script 0 aborted in command 1 query 0: ERROR:  prepared statement "P_0" does not exist
pgbench: error: Run was aborted; the above results are incomplete.
`
	outAllAborted = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: /tmp/bad.sql
scaling factor: 1
query mode: simple
number of clients: 2
number of threads: 1
maximum number of tries: 1
duration: 1 s
number of transactions actually processed: 0
number of failed transactions: 0 (NaN%)
`
	errAllAborted = `pgbench: error: client 1 script 0 aborted in command 0 query 0: ERROR:  division by zero
pgbench: error: client 0 script 0 aborted in command 0 query 0: ERROR:  division by zero
pgbench: error: Run was aborted; the above results are incomplete.
`
	errRefused = `pgbench: error: connection to server at "127.0.0.1", port 1 failed: Connection refused
	Is the server running on that host and accepting TCP/IP connections?
pgbench: error: could not create connection for setup
`
)

func TestParsePgbench(t *testing.T) {
	r, err := parsePgbench(outSelect, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.TPS != 9100.231039 || r.Transactions != 17705 || r.Failed != 0 || r.Aborted != 0 ||
		r.LatencyAvgMs != 0.44 || r.ConnTimeMs != 60.528 || r.Errors() != 0 || r.FirstError != "" {
		t.Fatalf("select-only: %+v", r)
	}

	r, err = parsePgbench(outConnect, "")
	if err != nil || r.TPS != 80.357279 || r.ConnTimeMs != 24.393 || r.Transactions != 163 {
		t.Fatalf("-C: %+v, %v", r, err)
	}

	r, err = parsePgbench(outPartlyAborted, errPartlyAborted)
	if err != nil {
		t.Fatal(err)
	}
	if r.TPS != 2500.5 || r.Failed != 3 || r.Aborted != 2 || r.Errors() != 5 ||
		!strings.Contains(r.FirstError, `prepared statement "P_0" does not exist`) {
		t.Fatalf("partly aborted: %+v", r)
	}

	for name, tc := range map[string][2]string{
		"all aborted": {outAllAborted, errAllAborted},
		"refused":     {"", errRefused},
		"nothing":     {"", ""},
	} {
		r, err := parsePgbench(tc[0], tc[1])
		if err == nil {
			t.Errorf("%s: parsed as %+v", name, r)
		}
	}
	_, err = parsePgbench(outAllAborted, errAllAborted)
	if !strings.Contains(err.Error(), "division by zero") {
		t.Errorf("all aborted: error %v does not carry the cause", err)
	}
	_, err = parsePgbench("", errRefused)
	if !strings.Contains(err.Error(), "Connection refused") {
		t.Errorf("refused: error %v does not carry the cause", err)
	}
}

func TestParseLatencyLog(t *testing.T) {
	log := "0 2 1024 0 1795687243 72276\n" +
		"0 3 152 0 1795687243 72446\n" +
		"\n" +
		"1 3 failed 0 1795687243 72836\n" +
		"1 4 skipped 0 1795687243 72836 0\n" +
		"2 1 3914 0 1795687243 73991 12\n"
	got, err := parseLatencyLog(strings.NewReader(log), []float64{9})
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{9, 1.024, 0.152, 3.914}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"0 1 2\n", "0 1 x 0 1 2\n"} {
		if _, err := parseLatencyLog(strings.NewReader(bad), nil); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestReadLatencyLogs(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "pgbench")
	if _, err := readLatencyLogs(prefix); err == nil {
		t.Fatal("no files, no error")
	}
	for name, body := range map[string]string{
		"pgbench.123":   "0 1 1000 0 1 1\n0 2 2000 0 1 2\n",
		"pgbench.123.1": "1 1 3000 0 1 1\n",
		"other.123":     "1 1 99000 0 1 1\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lat, err := readLatencyLogs(prefix)
	if err != nil || len(lat) != 3 {
		t.Fatalf("readLatencyLogs = %v, %v", lat, err)
	}
}

func TestParsePgbenchNoTransaction(t *testing.T) {
	out := strings.Replace(outAllAborted, "transaction type: /tmp/bad.sql", "transaction type: <builtin: select only>", 1)
	_, err := parsePgbench(out, "")
	if err == nil || !strings.Contains(err.Error(), "no transaction") {
		t.Fatalf("error %v, want one about no transaction", err)
	}
}
