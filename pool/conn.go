package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Conn is one backend connection of one tenant: an authenticated raw byte
// stream to the cluster, taken over from pgconn after the handshake.
//
// Between Acquire and Release the caller owns the connection exclusively and
// reads and writes Conn directly. The pool never touches a connection it has
// handed out.
type Conn struct {
	net.Conn
	// PID and SecretKey are the backend's own cancel key.
	PID       uint32
	SecretKey []byte
	// Params are the ParameterStatus values the backend reported at startup.
	Params map[string]string
	// State is opaque per-connection data of the connection's user (the
	// proxy's record of statements prepared on it). The pool never reads
	// it; it lives as long as the connection.
	State any
	// RanQuery is set whenever the pool (or Exec) ran a simple-protocol
	// Query on the connection, which destroys the backend's unnamed
	// prepared statement: the pool validates suspect connections that
	// way before handing them out. The connection's user clears it.
	RanQuery bool

	tenant   *tenantPool
	frontend *pgproto3.Frontend
	cancelTo string // address the connection is really connected to
	created  time.Time
	lastUsed time.Time
	out      bool // handed out by Acquire, not yet released (guarded by Manager.mu)
	// admit is the connection's state under max_active_transactions
	// (active.go): written under Manager.mu by whoever holds the
	// connection, read by it without the lock.
	admit   admitState
	epoch   uint64 // tenant epoch of the settings it was dialed with
	checked uint64 // Suspect generation it was dialed or last validated under (guarded by Manager.mu)
	// cancelMu is held from HoldForCancel until the cancel request is
	// delivered; Release waits for it, so the request cannot land on the
	// connection's next user.
	cancelMu sync.Mutex
}

// Tenant is the name of the tenant this connection belongs to.
func (c *Conn) Tenant() string { return c.tenant.name }

// Exec runs one simple-protocol statement on an idle connection and waits for
// its ReadyForQuery, which must report an idle transaction status. It is for
// resets and probes (DISCARD ALL), never for client traffic. The caller must
// not have unread bytes of this connection buffered elsewhere.
func (c *Conn) Exec(ctx context.Context, sql string) error {
	_, err := c.simpleQuery(ctx, sql, nil)
	return err
}

// ExecReport is Exec that passes each ParameterStatus of the answer to
// report.
func (c *Conn) ExecReport(ctx context.Context, sql string, report func(name, value string)) error {
	_, err := c.simpleQuery(ctx, sql, report)
	return err
}

// readOnly asks the backend whether its server is read-only: true on a
// standby, on an Aurora writer demoted by a failover, and where the
// server's (or role's, or database's) default_transaction_read_only is on.
func (c *Conn) readOnly(ctx context.Context) (bool, error) {
	// Not SHOW transaction_read_only: a client of the tenant may have set
	// default_transaction_read_only (a startup option, a followed SET,
	// applied with set_config) on this backend, which says nothing about
	// the server. reset_val is the session default, which those leave.
	v, err := c.simpleQuery(ctx, "SELECT pg_catalog.pg_is_in_recovery() OR (SELECT s.reset_val = 'on' FROM pg_catalog.pg_settings s WHERE s.name = 'default_transaction_read_only')", nil)
	if err != nil {
		return false, err
	}
	switch v {
	case "t":
		return true, nil
	case "f":
		return false, nil
	}
	return false, fmt.Errorf("pool: read-only check returned %q", v)
}

// simpleQuery runs sql as one simple-protocol Query and returns the first
// column of its first row, if any; report, if not nil, gets each
// ParameterStatus.
func (c *Conn) simpleQuery(ctx context.Context, sql string, report func(name, value string)) (string, error) {
	if c.frontend == nil {
		return "", errors.New("pool: connection cannot run queries (no protocol state)")
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.Conn.SetDeadline(dl)
		defer func() { _ = c.Conn.SetDeadline(time.Time{}) }()
	}
	c.RanQuery = true
	c.frontend.Send(&pgproto3.Query{String: sql})
	if err := c.frontend.Flush(); err != nil {
		return "", err
	}
	var pgErr error
	var first string
	rows := 0
	for {
		msg, err := c.frontend.Receive()
		if err != nil {
			return "", err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			if rows == 0 && len(m.Values) > 0 {
				first = string(m.Values[0])
			}
			rows++
		case *pgproto3.ErrorResponse:
			pgErr = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ParameterStatus:
			if report != nil {
				report(m.Name, m.Value)
			}
		case *pgproto3.ReadyForQuery:
			if pgErr != nil {
				return "", pgErr
			}
			if m.TxStatus != 'I' {
				return "", fmt.Errorf("pool: backend in transaction status %q after %q", m.TxStatus, sql)
			}
			if c.frontend.ReadBufferLen() != 0 {
				return "", errors.New("pool: unexpected bytes after ReadyForQuery")
			}
			return first, nil
		}
	}
}

// HoldForCancel keeps the connection from going back to the pool (Release
// waits) and WaitCancel from returning until the returned function is
// called. The holder of the connection takes it while it knows the work to
// cancel is still running, then calls Cancel without holding its own
// locks: a cancel may take seconds (the server unreachable), and the
// connection's user may finish meanwhile. ok is false, and nothing held,
// when another cancel is on its way already.
func (c *Conn) HoldForCancel() (unhold func(), ok bool) {
	if !c.cancelMu.TryLock() {
		return nil, false
	}
	return c.cancelMu.Unlock, true
}

// WaitCancel returns once no cancel request is on its way (HoldForCancel):
// the connection's user calls it before it takes the answer it waited for,
// so that a cancel meant for that work cannot hit its next.
func (c *Conn) WaitCancel() {
	c.cancelMu.Lock()
	//lint:ignore SA2001 the lock is taken only to wait for a cancel's holder to let go
	c.cancelMu.Unlock()
}

// Cancel asks the backend to cancel whatever this connection is running, over
// a separate connection to the same server address, as libpq does. It returns
// once the server has taken the request (closed the cancel connection): a
// caller that holds the connection (HoldForCancel) until then knows the
// request cannot land on a later user of the backend.
func (c *Conn) Cancel(ctx context.Context) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.cancelTo)
	if err != nil {
		return err
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	buf := make([]byte, 12, 12+len(c.SecretKey))
	binary.BigEndian.PutUint32(buf[0:4], uint32(12+len(c.SecretKey)))
	binary.BigEndian.PutUint32(buf[4:8], 80877102) // CancelRequest code
	binary.BigEndian.PutUint32(buf[8:12], c.PID)
	buf = append(buf, c.SecretKey...)
	if _, err := nc.Write(buf); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, nc) // the server closes when done
	return nil
}

// close sends Terminate (best effort, bounded) and closes the socket.
func (c *Conn) close() {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Conn.Write([]byte{'X', 0, 0, 0, 4})
	_ = c.Conn.Close()
}
