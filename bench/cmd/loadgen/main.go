// Command loadgen runs pgbridge's multi-tenant load workloads (see package
// bench/internal/load): a noisy neighbour next to quiet tenants, a
// connection storm, and many idle clients.
//
// It reads a JSON spec (load.Spec) from the file named by -spec, "-" for
// the first line of stdin, and writes JSON events (load.Event), one per
// line, to stdout: for the idle mode a "connected" event once every client
// is logged in, then a "result" or an "error". In idle mode the clients
// stay connected until stdin ends (or the spec's hold time passes, or a
// signal arrives). The comparison harness, bench/cmd/compare, runs it as a
// child process; by hand:
//
//	echo '{"mode":"storm","clients":100,"logins":[{"tenant":"acme","host":"127.0.0.1","port":6432,
//	  "user":"acme_app","password":"acme-secret","database":"tenant_acme"}]}' | loadgen
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/pgbridge/pgbridge/bench/internal/load"
	"github.com/pgbridge/pgbridge/bench/internal/report"
)

func main() {
	specPath := flag.String("spec", "-", `JSON spec file; "-" reads the first line of stdin`)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := &emitter{enc: json.NewEncoder(os.Stdout)}
	if err := run(ctx, *specPath, os.Stdin, out); err != nil {
		out.emit(load.Event{Event: load.EventError, Error: err.Error()})
		stop()
		os.Exit(1)
	}
}

// emitter writes events, one JSON object per line.
type emitter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (e *emitter) emit(ev load.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.enc.Encode(ev)
}

func run(ctx context.Context, specPath string, stdin io.Reader, out *emitter) error {
	in := bufio.NewReader(stdin)
	var raw []byte
	var err error
	if specPath == "-" {
		raw, err = in.ReadBytes('\n')
		if err != nil && !(errors.Is(err, io.EOF) && len(raw) > 0) {
			return fmt.Errorf("reading the spec from stdin: %w", err)
		}
	} else if raw, err = os.ReadFile(specPath); err != nil {
		return err
	}
	var spec load.Spec
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	if err := spec.Validate(); err != nil {
		return err
	}

	switch spec.Mode {
	case load.ModeNoisy:
		res, err := load.Noisy(ctx, spec)
		if err != nil {
			return err
		}
		out.emit(load.Event{Event: load.EventResult, Noisy: res})
	case load.ModeStorm:
		res, err := load.Storm(ctx, spec)
		if err != nil {
			return err
		}
		out.emit(load.Event{Event: load.EventResult, Storm: res})
	case load.ModeIdle:
		// The rest of stdin ending releases the clients.
		release := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, in)
			close(release)
		}()
		res, err := load.Idle(ctx, spec, func(r *report.IdleResult) {
			out.emit(load.Event{Event: load.EventConnected, Idle: r})
		}, release)
		if err != nil {
			return err
		}
		out.emit(load.Event{Event: load.EventResult, Idle: res})
	}
	return nil
}
