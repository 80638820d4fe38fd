package proxy_test

import (
	"context"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// appendAfterAuth is a client connection that sends extra right behind its
// final SASLResponse (the second 'p' message), in the same write, as a
// client that pipelines its first request behind its login does.
type appendAfterAuth struct {
	net.Conn
	ps    int
	extra []byte
}

func (c *appendAfterAuth) Write(b []byte) (int, error) {
	if len(b) > 0 && b[0] == 'p' {
		if c.ps++; c.ps == 2 {
			if _, err := c.Conn.Write(append(append([]byte(nil), b...), c.extra...)); err != nil {
				return 0, err
			}
			return len(b), nil
		}
	}
	return c.Conn.Write(b)
}

// A request the client sent behind its last login message, without
// waiting for AuthenticationOk, was read with the login's bytes and left
// in the buffer: the client loop waited for more bytes before serving it,
// and the client for its answer, until a timeout ended the session.
// PostgreSQL answers it.
func TestRequestPipelinedBehindLoginIsServed(t *testing.T) {
	r := startRouter(t)
	cfg, err := pgconn.ParseConfig(r.dsn("acme"))
	if err != nil {
		t.Fatal(err)
	}
	q, _ := (&pgproto3.Query{String: "select 'after'"}).Encode(nil)
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &appendAfterAuth{Conn: nc, extra: q}, nil
	}
	hc := hijackConfig(t, cfg)
	if rows, codes := receiveUntil[*pgproto3.ReadyForQuery](t, hc); len(codes) > 0 || len(rows) != 1 || rows[0] != "after" {
		t.Fatalf("pipelined query: rows %v errors %v", rows, codes)
	}
	wantAfter(t, hc)
}
