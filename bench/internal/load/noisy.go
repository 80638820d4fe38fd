package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgbridge/pgbridge/bench/internal/report"
)

// worker is one client connection of the noisy workload and what it saw.
type worker struct {
	tenant   string
	conn     *pgx.Conn
	lat      []float64 // ms, successful queries
	errors   int64
	firstErr string
}

func (w *worker) fail(err error) {
	w.errors++
	if w.firstErr == "" {
		w.firstErr = errorText(err)
	}
}

// pgxConfig builds a pgx configuration for l that uses the extended
// protocol with unnamed statements, which every pooler in transaction mode
// can carry (named statements need statement tracking, which PgBouncer 1.18
// lacks).
func pgxConfig(l Login, connectTimeout time.Duration) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port = l.Host, uint16(l.Port)
	cfg.User, cfg.Password, cfg.Database = l.User, l.Password, l.Database
	cfg.ConnectTimeout = connectTimeout
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.RuntimeParams = map[string]string{"application_name": "pgbridge-loadgen"}
	return cfg, nil
}

// Noisy runs the noisy-neighbour workload and reports each tenant.
func Noisy(ctx context.Context, spec Spec) (*report.NoisyResult, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.Mode != ModeNoisy {
		return nil, fmt.Errorf("load: Noisy with mode %q", spec.Mode)
	}
	query := spec.Query
	if query == "" {
		query = DefaultQuery
	}
	maxArg := max(spec.MaxArg, 1)
	withArg := strings.Contains(query, "$1")
	run := func(ctx context.Context, c *pgx.Conn) error {
		var args []any
		if withArg {
			args = append(args, rand.IntN(maxArg)+1)
		}
		rows, err := c.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	}

	// Connect everything first, and run one query on each connection so
	// that pools are warm when the clock starts.
	var noisy, quiet []*worker
	for _, l := range spec.Logins {
		n, list := spec.QuietClients, &quiet
		if l.Tenant == spec.NoisyTenant {
			if spec.Baseline {
				continue
			}
			n, list = spec.NoisyClients, &noisy
		} else if spec.NoisyOnly {
			continue
		}
		cfg, err := pgxConfig(l, spec.connectTimeout())
		if err != nil {
			return nil, err
		}
		for range n {
			*list = append(*list, &worker{tenant: l.Tenant})
			w := (*list)[len(*list)-1]
			w.conn, err = pgx.ConnectConfig(ctx, cfg)
			if err == nil {
				qctx, cancel := context.WithTimeout(ctx, spec.queryTimeout())
				err = run(qctx, w.conn)
				cancel()
			}
			if err != nil {
				closeWorkers(noisy, quiet)
				return nil, fmt.Errorf("load: tenant %s: warm-up: %w", l.Tenant, err)
			}
		}
	}
	defer closeWorkers(noisy, quiet)

	dur := time.Duration(spec.Seconds * float64(time.Second))
	start := time.Now().Add(50 * time.Millisecond) // every goroutine is waiting by then
	if spec.StartAt != 0 {
		start = time.Unix(0, spec.StartAt)
		if time.Until(start) < 10*time.Millisecond {
			return nil, fmt.Errorf("load: connecting took past the start time")
		}
	}
	end := start.Add(dur)
	var wg sync.WaitGroup
	for _, w := range noisy {
		wg.Go(func() {
			time.Sleep(time.Until(start))
			for time.Now().Before(end) && ctx.Err() == nil {
				qctx, cancel := context.WithTimeout(ctx, spec.queryTimeout())
				t0 := time.Now()
				err := run(qctx, w.conn)
				cancel()
				if err != nil {
					w.fail(err)
					if broken(w.conn, err) {
						return
					}
					continue
				}
				w.lat = append(w.lat, ms(time.Since(t0)))
			}
		})
	}
	// Each quiet tenant's rate is split over its connections, whose
	// schedules are staggered; a query's latency counts from when it was
	// due, so a stalled connection is not hidden by sending less.
	perConn := spec.QuietRate / float64(spec.QuietClients)
	interval := time.Duration(float64(time.Second) / perConn)
	for i, w := range quiet {
		offset := interval * time.Duration(i%spec.QuietClients) / time.Duration(spec.QuietClients)
		wg.Go(func() {
			for k := 0; ; k++ {
				due := start.Add(offset + time.Duration(k)*interval)
				if !due.Before(end) || ctx.Err() != nil {
					return
				}
				if d := time.Until(due); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				qctx, cancel := context.WithTimeout(ctx, spec.queryTimeout())
				err := run(qctx, w.conn)
				cancel()
				if err != nil {
					w.fail(err)
					if broken(w.conn, err) {
						return
					}
					continue
				}
				w.lat = append(w.lat, ms(time.Since(due)))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	elapsed := time.Since(start).Seconds()

	res := &report.NoisyResult{Seconds: elapsed}
	for _, l := range spec.Logins {
		tr := report.TenantResult{Tenant: l.Tenant, Role: report.RoleQuiet}
		if l.Tenant == spec.NoisyTenant {
			if spec.Baseline {
				continue
			}
			tr.Role = report.RoleNoisy
		} else if spec.NoisyOnly {
			continue
		}
		var lat []float64
		for _, w := range append(append([]*worker(nil), noisy...), quiet...) {
			if w.tenant != l.Tenant {
				continue
			}
			tr.Clients++
			lat = append(lat, w.lat...)
			tr.Errors += w.errors
			if tr.FirstError == "" {
				tr.FirstError = w.firstErr
			}
		}
		tr.Queries = int64(len(lat)) + tr.Errors
		tr.QPS = float64(len(lat)) / elapsed
		tr.Latency = report.Summarize(lat)
		res.Tenants = append(res.Tenants, tr)
	}
	return res, nil
}

// broken reports whether the connection cannot be used any more.
func broken(c *pgx.Conn, err error) bool {
	return c.IsClosed() || errors.Is(err, context.Canceled)
}

func closeWorkers(lists ...[]*worker) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range lists {
		for _, w := range l {
			if w.conn != nil {
				_ = w.conn.Close(ctx)
			}
		}
	}
}
