package pool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgbridge/pgbridge/routing"
)

// PgconnDialer dials the cluster endpoint with pgconn as the tenant's own
// backend role, then hijacks the raw connection.
type PgconnDialer struct {
	Backend routing.Backend
}

// Dial implements Dialer.
func (d *PgconnDialer) Dial(ctx context.Context, t *routing.Tenant) (*Conn, error) {
	cfg, err := d.config(t)
	if err != nil {
		return nil, err
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// pgconn may have a background read pending on the socket (it starts
	// one while flushing); it would swallow the first bytes the relay
	// expects. SyncConn stops it and proves the buffer empty.
	if err := pc.SyncConn(ctx); err != nil {
		_ = pc.Close(ctx)
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		_ = pc.Close(ctx)
		return nil, err
	}
	if hc.Frontend.ReadBufferLen() != 0 || hc.TxStatus != 'I' {
		_ = hc.Conn.Close()
		return nil, errors.New("pool: backend not idle after startup")
	}
	return &Conn{
		Conn:      hc.Conn,
		PID:       hc.PID,
		SecretKey: hc.SecretKey,
		Params:    hc.ParameterStatuses,
		frontend:  hc.Frontend,
		cancelTo:  hc.Conn.RemoteAddr().String(),
	}, nil
}

// config builds the pgconn configuration. Host, port and TLS come from the
// backend section; the role, database and guardrail parameters from the
// tenant. Nothing is taken from PG* environment variables that could change
// where or as whom we connect.
func (d *PgconnDialer) config(t *routing.Tenant) (*pgconn.Config, error) {
	b := d.Backend
	dsn := fmt.Sprintf("host=%s port=%d sslmode=%s", quote(b.Host), b.Port, b.TLS.Mode)
	if b.TLS.CAFile != "" {
		dsn += " sslrootcert=" + quote(b.TLS.CAFile)
	}
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pool: backend settings: %w", err)
	}
	cfg.User = t.BackendUser
	cfg.Password = t.BackendPassword
	cfg.Database = t.Database
	cfg.ConnectTimeout = b.ConnectTimeout
	cfg.ValidateConnect = nil
	cfg.AfterConnect = nil
	cfg.OnNotice = nil
	cfg.OnNotification = nil
	cfg.RuntimeParams = RuntimeParams(t.Policy)
	return cfg, nil
}

// RuntimeParams are the startup parameters every backend connection of a
// tenant gets: the guardrails the backend enforces itself.
func RuntimeParams(p routing.Policy) map[string]string {
	rp := map[string]string{"application_name": "pgbridge"}
	if p.StatementTimeout > 0 {
		rp["statement_timeout"] = strconv.FormatInt(p.StatementTimeout.Milliseconds(), 10)
	}
	if p.IdleInTransactionTimeout > 0 {
		// The router enforces the limit itself (closing the client with
		// 25P03 and discarding the backend); the backend's own timeout is
		// a backstop at twice the limit, so it never wins the race and
		// leaves the client with a dead connection instead of the router's
		// error.
		rp["idle_in_transaction_session_timeout"] = strconv.FormatInt((2*p.IdleInTransactionTimeout + time.Second).Milliseconds(), 10)
	}
	return rp
}

func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, ` '\`) {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
