package metrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// errDraining is the /readyz answer while the router drains.
var errDraining = errors.New("draining")

// readiness runs Options.Ready for /readyz. Requests that arrive while a
// probe is running wait for that probe instead of starting their own, so a
// burst of probes costs the backend one check.
type readiness struct {
	probe   func(context.Context) error
	timeout time.Duration
	log     *zap.Logger

	mu       sync.Mutex
	inflight *probeCall
	known    bool // state holds the last outcome
	state    bool // ready at the last outcome
}

type probeCall struct {
	done    chan struct{} // closed when err is set
	err     error
	waiters int // requests waiting on this call (guarded by readiness.mu)
}

func newReadiness(probe func(context.Context) error, timeout time.Duration, log *zap.Logger) *readiness {
	return &readiness{probe: probe, timeout: timeout, log: log}
}

// check returns nil when ready, else the reason. It returns within the
// probe timeout even if the probe ignores its context, and earlier if ctx
// ends.
func (r *readiness) check(ctx context.Context) error {
	if r.probe == nil {
		r.note(nil)
		return nil
	}
	r.mu.Lock()
	call := r.inflight
	if call == nil {
		call = &probeCall{done: make(chan struct{})}
		r.inflight = call
		go r.run(call)
	}
	call.waiters++
	r.mu.Unlock()

	timer := time.NewTimer(r.timeout)
	defer timer.Stop()
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("readiness check gave no answer within %v", r.timeout)
	}
}

// waiting returns how many requests wait on the probe in flight.
func (r *readiness) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight == nil {
		return 0
	}
	return r.inflight.waiters
}

// run performs one probe for every request waiting on call.
func (r *readiness) run(call *probeCall) {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	err := r.safeProbe(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("readiness check gave no answer within %v: %w", r.timeout, err)
	}
	cancel()
	r.note(err) // before anyone sees the answer, so log lines keep their order

	r.mu.Lock()
	call.err = err
	r.inflight = nil
	r.mu.Unlock()
	close(call.done)
}

// safeProbe calls the probe, turning a panic into an error: a broken check
// must not take the router down.
func (r *readiness) safeProbe(ctx context.Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("readiness check panicked", zap.Any("panic", p), zap.Stack("stack"))
			err = errors.New("readiness check failed internally")
		}
	}()
	return r.probe(ctx)
}

// note logs changes between ready and not ready (not every failed probe).
func (r *readiness) note(err error) {
	ready := err == nil
	r.mu.Lock()
	changed := !r.known || r.state != ready
	r.known, r.state = true, ready
	r.mu.Unlock()
	if !changed {
		return
	}
	if ready {
		r.log.Info("router ready")
	} else {
		r.log.Warn("router not ready", zap.String("reason", err.Error()))
	}
}
