package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
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

	tenant   *tenantPool
	frontend *pgproto3.Frontend
	cancelTo string // address the connection is really connected to
	created  time.Time
	lastUsed time.Time
	out      bool // handed out by Acquire, not yet released (guarded by Manager.mu)
}

// Tenant is the name of the tenant this connection belongs to.
func (c *Conn) Tenant() string { return c.tenant.name }

// Exec runs one simple-protocol statement on an idle connection and waits for
// its ReadyForQuery, which must report an idle transaction status. It is for
// resets and probes (DISCARD ALL), never for client traffic. The caller must
// not have unread bytes of this connection buffered elsewhere.
func (c *Conn) Exec(ctx context.Context, sql string) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.Conn.SetDeadline(dl)
		defer func() { _ = c.Conn.SetDeadline(time.Time{}) }()
	}
	c.frontend.Send(&pgproto3.Query{String: sql})
	if err := c.frontend.Flush(); err != nil {
		return err
	}
	var pgErr error
	for {
		msg, err := c.frontend.Receive()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			pgErr = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			if pgErr != nil {
				return pgErr
			}
			if m.TxStatus != 'I' {
				return fmt.Errorf("pool: backend in transaction status %q after %q", m.TxStatus, sql)
			}
			if c.frontend.ReadBufferLen() != 0 {
				return errors.New("pool: unexpected bytes after ReadyForQuery")
			}
			return nil
		}
	}
}

// Cancel asks the backend to cancel whatever this connection is running, over
// a separate connection to the same server address, as libpq does. It returns
// once the server has taken the request (closed the cancel connection), so a
// caller that holds the connection meanwhile knows the request cannot land on
// a later user of the backend.
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
