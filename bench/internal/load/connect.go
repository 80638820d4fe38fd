package load

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pgbridge/pgbridge/bench/internal/report"
)

// Storm starts spec.Clients goroutines that wait for one start signal, then
// each log in (spread over the logins in turn) and run one query. Every
// connection stays open until all clients are done, so all of them are
// connected at the same time at the end.
func Storm(ctx context.Context, spec Spec) (*report.StormResult, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.Mode != ModeStorm {
		return nil, fmt.Errorf("load: Storm with mode %q", spec.Mode)
	}
	keys := newKeyCache()
	// Derive every login's SCRAM keys before the storm: the first login of
	// each tenant would otherwise pay PBKDF2 inside the measurement.
	for _, l := range spec.Logins {
		cctx, cancel := context.WithTimeout(ctx, spec.connectTimeout())
		c, err := rawConnect(cctx, l, keys)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("load: tenant %s: %w", l.Tenant, err)
		}
		c.close()
	}

	type outcome struct {
		conn           *rawConn
		connected      time.Duration // since the start signal
		queried        time.Duration // since the start signal
		query          time.Duration // the query alone
		err            error
		connectedPhase bool
	}
	out := make([]outcome, spec.Clients)
	start := make(chan struct{})
	var ready, wg sync.WaitGroup
	var t0 time.Time
	for i := range spec.Clients {
		ready.Add(1)
		wg.Go(func() {
			l := spec.Logins[i%len(spec.Logins)]
			o := &out[i]
			ready.Done()
			<-start
			cctx, cancel := context.WithTimeout(ctx, spec.connectTimeout())
			defer cancel()
			c, err := rawConnect(cctx, l, keys)
			if err != nil {
				o.err = err
				return
			}
			o.conn, o.connected, o.connectedPhase = c, time.Since(t0), true
			qctx, qcancel := context.WithTimeout(ctx, spec.queryTimeout())
			defer qcancel()
			q0 := time.Now()
			if err := c.simpleQuery(qctx, "SELECT 1"); err != nil {
				o.err = err
				return
			}
			o.query, o.queried = time.Since(q0), time.Since(t0)
			c.dropFrontend()
		})
	}
	ready.Wait()
	t0 = time.Now()
	close(start)
	wg.Wait()
	defer func() {
		for _, o := range out {
			if o.conn != nil {
				o.conn.close()
			}
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	res := &report.StormResult{Clients: spec.Clients}
	var conn, query []float64
	for _, o := range out {
		if o.connectedPhase {
			res.Connected++
			conn = append(conn, ms(o.connected))
			res.AllConnectedSeconds = max(res.AllConnectedSeconds, o.connected.Seconds())
		}
		if o.err != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = errorText(o.err)
			}
			continue
		}
		query = append(query, ms(o.query))
		res.AllQueriedSeconds = max(res.AllQueriedSeconds, o.queried.Seconds())
	}
	res.Connect, res.FirstQuery = report.Summarize(conn), report.Summarize(query)
	return res, nil
}

// Idle opens spec.Clients connections, at most spec.Parallel at a time,
// spread over the logins in turn; each runs one query and then sits idle.
// Once all attempts are done, connected is called with the result so far;
// the connections stay open until release is closed, ctx ends or
// spec.HoldSeconds pass, and are closed before Idle returns.
func Idle(ctx context.Context, spec Spec, connected func(*report.IdleResult), release <-chan struct{}) (*report.IdleResult, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.Mode != ModeIdle {
		return nil, fmt.Errorf("load: Idle with mode %q", spec.Mode)
	}
	keys := newKeyCache()
	conns := make([]*rawConn, spec.Clients)
	errs := make([]error, spec.Clients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	next := make(chan int)
	var wg sync.WaitGroup
	t0 := time.Now()
	for range max(1, spec.Parallel) {
		wg.Go(func() {
			for i := range next {
				cctx, cancel := context.WithTimeout(ctx, spec.connectTimeout())
				c, err := rawConnect(cctx, spec.Logins[i%len(spec.Logins)], keys)
				cancel()
				if err == nil {
					qctx, qcancel := context.WithTimeout(ctx, spec.queryTimeout())
					err = c.simpleQuery(qctx, "SELECT 1")
					qcancel()
					c.dropFrontend()
					conns[i] = c // closed by the deferred loop, also on error
				}
				errs[i] = err
			}
		})
	}
feed:
	for i := range spec.Clients {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &report.IdleResult{Clients: spec.Clients, ConnectSeconds: time.Since(t0).Seconds()}
	for i, err := range errs {
		if err != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = errorText(err)
			}
			continue
		}
		if conns[i] != nil {
			res.Connected++
		}
	}
	if connected != nil {
		connected(res)
	}
	hold := time.NewTimer(secondsOr(spec.HoldSeconds, 60))
	defer hold.Stop()
	select {
	case <-release:
	case <-ctx.Done():
	case <-hold.C:
	}
	return res, nil
}
