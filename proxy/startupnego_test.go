package proxy_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// wantClosedWithFatal reads the rest of a raw connection and fails unless
// it is one FATAL ErrorResponse with code, then the close.
func wantClosedWithFatal(t *testing.T, nc net.Conn, code string) *pgproto3.ErrorResponse {
	t.Helper()
	msgs, err := readUntilClosed(nc, 5*time.Second)
	if err != nil {
		t.Fatalf("connection not closed promptly: %v (got %v)", err, msgs)
	}
	if len(msgs) != 1 {
		t.Fatalf("want one ErrorResponse before the close, got %v", msgs)
	}
	e, ok := msgs[0].(*pgproto3.ErrorResponse)
	if !ok || e.Code != code || e.Severity != "FATAL" {
		t.Fatalf("want FATAL %s, got %#v", code, msgs[0])
	}
	return e
}

// Each encryption request is answered once, as PostgreSQL does: a second
// SSLRequest or GSSENCRequest is an unknown protocol version, so a client
// cannot keep a connection in negotiation by repeating them.
func TestEncryptionRequestsAnsweredOnce(t *testing.T) {
	r := startRouter(t) // no listen TLS: an SSLRequest is refused with 'N'
	const ssl, gss = 80877103, 80877104
	request := func(code uint32) []byte {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), code)
	}
	negotiate := func(t *testing.T, nc net.Conn, code uint32) {
		t.Helper()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(request(code)); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(nc, b); err != nil || b[0] != 'N' {
			t.Fatalf("request %d: want N, got %q (%v)", code, b, err)
		}
	}
	for _, tc := range []struct {
		name   string
		first  uint32
		second uint32
	}{
		{"ssl twice", ssl, ssl},
		{"gss twice", gss, gss},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc := rawDial(t, r)
			negotiate(t, nc, tc.first)
			if _, err := nc.Write(request(tc.second)); err != nil {
				t.Fatal(err)
			}
			e := wantClosedWithFatal(t, nc, "0A000")
			t.Logf("%s: %s", tc.name, e.Message)
		})
	}
	// Either order of one of each is what libpq does with gssencmode and
	// sslmode both set to prefer; the login goes on after them.
	for _, order := range [][2]uint32{{gss, ssl}, {ssl, gss}} {
		nc := rawDial(t, r)
		negotiate(t, nc, order[0])
		negotiate(t, nc, order[1])
		fe := pgproto3.NewFrontend(bufio.NewReader(nc), nc)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{"user": tenants["acme"].Login, "database": tenants["acme"].Database}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		m, err := fe.Receive()
		if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
			t.Fatalf("order %v: want AuthenticationSASL after the startup message, got %#v (%v)", order, m, err)
		}
	}
}

// The data length inside a SASLInitialResponse must match the data, for
// a known user and an unknown one alike.
func TestSASLInitialResponseLengthChecked(t *testing.T) {
	r := startRouter(t)
	acme := tenants["acme"]
	data := []byte("n,,n=,r=abcdefghijklmnop")
	for _, user := range []string{acme.Login, "nobody_at_all"} {
		for _, declared := range []int32{int32(len(data)) + 5, int32(len(data)) - 1, -1} {
			nc := rawDial(t, r)
			fe := pgproto3.NewFrontend(bufio.NewReader(nc), nc)
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
				Parameters: map[string]string{"user": user, "database": acme.Database}})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			if m, err := fe.Receive(); err != nil {
				t.Fatal(err)
			} else if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
				t.Fatalf("want AuthenticationSASL, got %#v", m)
			}
			body := append([]byte("SCRAM-SHA-256"), 0)
			body = binary.BigEndian.AppendUint32(body, uint32(declared))
			body = append(body, data...)
			msg := append([]byte{'p'}, binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))...)
			if _, err := nc.Write(append(msg, body...)); err != nil {
				t.Fatal(err)
			}
			e := wantClosedWithFatal(t, nc, "08P01")
			if e.Message != "pgbridge: invalid message format" {
				t.Errorf("user %s, declared %d: message %q", user, declared, e.Message)
			}
		}
	}
	// The right length still logs in (pgx declares it).
	conn := r.connect(t, "acme")
	if got := queryInt(t, conn, "select 1"); got != 1 {
		t.Fatalf("select 1: %d", got)
	}
	closeConn(conn)
}
