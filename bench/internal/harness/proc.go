package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// proc is a child process the harness started, in a process group of its
// own: a Ctrl-C at the terminal reaches only the harness, which stops its
// children itself, and stopping a child reaches everything it started.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has been waited for
	err     error         // Wait's result, valid after done
}

// startProc starts cmd in its own process group with stdout and stderr
// appended to logPath (unless the caller set them).
func startProc(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	// Output pipes held open by a stray grandchild must not block Wait.
	cmd.WaitDelay = 5 * time.Second
	var logf *os.File
	if logPath != "" && (cmd.Stdout == nil || cmd.Stderr == nil) {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		logf = f
		if cmd.Stdout == nil {
			cmd.Stdout = f
		}
		if cmd.Stderr == nil {
			cmd.Stderr = f
		}
	}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig to the process group, waits up to grace for the process
// to end, then kills the group. It is a no-op once the process has ended.
// The group is only signalled while its leader has not been reaped, so a
// recycled process ID is never hit.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid(), sig)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	if !p.exited() {
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	}
	<-p.done
}

// logTail returns the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// runResult is the output of a finished command.
type runResult struct {
	stdout, stderr string
	exitCode       int // -1 when it did not exit by itself
}

// runBounded runs cmd in its own process group, with stdin from stdin (may
// be nil), and returns its output. If ctx ends or limit passes first, the
// group gets SIGTERM and, 3 s later, SIGKILL; the error then says so.
func runBounded(ctx context.Context, name string, cmd *exec.Cmd, stdin io.Reader, limit time.Duration) (runResult, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, stdin
	p, err := startProc(name, cmd, "")
	if err != nil {
		return runResult{}, err
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	var why error
	select {
	case <-p.done:
	case <-ctx.Done():
		why = ctx.Err()
	case <-timer.C:
		why = fmt.Errorf("%s did not finish within %s", name, limit)
	}
	if why != nil {
		p.stop(syscall.SIGTERM, 3*time.Second)
	}
	<-p.done
	res := runResult{stdout: out.String(), stderr: errb.String(), exitCode: -1}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		res.exitCode = 0
	case errors.As(p.err, &ee) && ee.Exited():
		res.exitCode = ee.ExitCode()
	}
	if why != nil {
		return res, why
	}
	return res, nil
}
