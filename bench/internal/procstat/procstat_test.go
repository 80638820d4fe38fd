package procstat

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses, utime 250 and stime 130
	// ticks: 3.8 s.
	line := "1234 (pg (bouncer) x) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 1 0 100 1000000 200 " +
		"18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n"
	got, err := parseStatCPU(line)
	if err != nil || got != 3800*time.Millisecond {
		t.Fatalf("parseStatCPU = %v, %v; want 3.8s", got, err)
	}
	if ppid, err := parentPID(line); err != nil || ppid != 1 {
		t.Fatalf("parentPID = %v, %v; want 1", ppid, err)
	}
	for _, bad := range []string{"", "1234 (x", "1234 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 a b"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q) succeeded", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	text := "Name:\tpgbridge\nVmPeak:\t 1000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n"
	m, err := parseStatus(text)
	if err != nil || m != (Mem{RSS: 10240, HWM: 20480}) {
		t.Fatalf("parseStatus = %+v, %v", m, err)
	}
	if _, err := parseStatus("Name:\tkthreadd\nThreads:\t1\n"); err == nil {
		t.Fatal("status without VmRSS parsed")
	}
}

func TestParseRollupPSS(t *testing.T) {
	text := "55d0a0000000-7ffd00000000 ---p 00000000 00:00 0 [rollup]\nRss:  9000 kB\nPss:  4321 kB\nPss_Anon: 100 kB\n"
	if n, err := parseRollupPSS(text); err != nil || n != 4321 {
		t.Fatalf("parseRollupPSS = %d, %v", n, err)
	}
	if _, err := parseRollupPSS("Rss: 1 kB\n"); err == nil {
		t.Fatal("rollup without Pss parsed")
	}
}

// TestLive reads this process and a child of it.
func TestLive(t *testing.T) {
	pid := os.Getpid()
	// Burn a little CPU so the counter moves past one tick.
	before, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); {
	}
	after, err := CPU(pid)
	if err != nil || after <= before {
		t.Fatalf("CPU went from %v to %v (%v)", before, after, err)
	}
	m, err := Memory(pid)
	if err != nil || m.RSS <= 0 || m.HWM < m.RSS {
		t.Fatalf("Memory = %+v, %v", m, err)
	}
	if err := ResetPeak(pid); err != nil {
		t.Logf("ResetPeak: %v (needs a kernel with clear_refs)", err)
	}
	if p, err := PSS(pid); err != nil || p <= 0 {
		t.Fatalf("PSS = %d, %v", p, err)
	}

	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	kids, err := Children(pid)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range kids {
		found = found || k == cmd.Process.Pid
	}
	if !found {
		t.Fatalf("Children(%d) = %v, want it to hold %d", pid, kids, cmd.Process.Pid)
	}
	if total, err := TreePSS(pid); err != nil || total <= 0 {
		t.Fatalf("TreePSS = %d, %v", total, err)
	}
}
