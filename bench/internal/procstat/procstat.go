// Package procstat reads what a Linux process uses from /proc: CPU time
// (utime + stime of all its threads), resident memory and its peak
// (VmRSS, VmHWM), and proportional memory (Pss) for processes that share
// pages, such as PostgreSQL's backends.
package procstat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat. It is 100 on
// every Linux architecture Go supports (the kernel's USER_HZ).
const userHZ = 100

// CPU returns the user plus system CPU time the process has used so far,
// summed over its threads (10 ms resolution).
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU takes utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may hold spaces and parentheses itself, so fields are counted from the
// last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("procstat: malformed stat line")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("procstat: short stat line")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("procstat: malformed utime or stime")
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// parentPID takes field 4 (ppid) from a /proc/<pid>/stat line.
func parentPID(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("procstat: malformed stat line")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, errors.New("procstat: short stat line")
	}
	return strconv.Atoi(f[1])
}

// Mem is the resident memory of a process, in KiB.
type Mem struct {
	RSS int64 // VmRSS: resident now
	HWM int64 // VmHWM: peak resident ("high water mark")
}

// Memory returns the process's current and peak resident set.
func Memory(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	return parseStatus(string(b))
}

func parseStatus(text string) (Mem, error) {
	var m Mem
	var haveRSS, haveHWM bool
	for _, line := range strings.Split(text, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch key {
		case "VmRSS":
			m.RSS, ok = kib(val)
			haveRSS = ok
		case "VmHWM":
			m.HWM, ok = kib(val)
			haveHWM = ok
		}
	}
	if !haveRSS || !haveHWM {
		return Mem{}, errors.New("procstat: no VmRSS/VmHWM in status (a kernel thread or a zombie?)")
	}
	return m, nil
}

// kib parses a "   1234 kB" value.
func kib(v string) (int64, bool) {
	f := strings.Fields(v)
	if len(f) != 2 || f[1] != "kB" {
		return 0, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	return n, err == nil
}

// ResetPeak sets the process's VmHWM back to its current RSS, so that the
// next Memory reports the peak since now. It needs the right to ptrace the
// process (same user, or root).
func ResetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// PSS returns the proportional set size of a process in KiB: its private
// pages plus its share of pages it shares with others. Summed over a group
// of processes (PostgreSQL's backends, which share shared_buffers), it
// counts every page once.
func PSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	return parseRollupPSS(string(b))
}

func parseRollupPSS(text string) (int64, error) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			if n, ok := kib(v); ok {
				return n, nil
			}
		}
	}
	return 0, errors.New("procstat: no Pss in smaps_rollup")
}

// Children returns the PIDs of the processes whose parent is pid.
func Children(pid int) ([]int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // the process ended meanwhile
		}
		if ppid, err := parentPID(string(b)); err == nil && ppid == pid {
			child, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			if err == nil {
				out = append(out, child)
			}
		}
	}
	return out, nil
}

// TreePSS returns the PSS of pid plus that of its direct children, in KiB.
// Processes that end while it reads are skipped.
func TreePSS(pid int) (int64, error) {
	total, err := PSS(pid)
	if err != nil {
		return 0, err
	}
	kids, err := Children(pid)
	if err != nil {
		return 0, err
	}
	for _, k := range kids {
		if p, err := PSS(k); err == nil {
			total += p
		}
	}
	return total, nil
}
