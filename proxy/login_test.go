package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// pipeListener hands the router the server ends of in-memory pipes. A read
// from a net.Pipe returns bytes of one write only, so a test can see how
// the router grouped its messages into writes.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// dial is a pgconn.DialFunc: the client end of a new pipe, recording what
// each of its reads returned.
func (l *pipeListener) dial(reads *[][]byte) pgconn.DialFunc {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		client, server := net.Pipe()
		select {
		case l.conns <- server:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &recordingConn{Conn: client, reads: reads}, nil
	}
}

type recordingConn struct {
	net.Conn
	reads *[][]byte
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		*c.reads = append(*c.reads, bytes.Clone(p[:n]))
	}
	return n, err
}

// messages decodes the backend messages in one read, by type name.
func messages(b []byte) []string {
	fe := pgproto3.NewFrontend(bytes.NewReader(b), io.Discard)
	var names []string
	for {
		msg, err := fe.Receive()
		if err != nil {
			return names
		}
		names = append(names, strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3."))
	}
}

// The SCRAM exchange's last message reaches the client in the same write
// as the welcome (or as the refusal that follows a good password), so a
// login costs the router one write fewer; real drivers take both.
func TestSASLFinalRidesWithWelcome(t *testing.T) {
	r := startRouter(t)
	ln := newPipeListener()
	serveDone := make(chan error, 1)
	go func() { serveDone <- r.srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-serveDone; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve on the pipe listener returned %v", err)
		}
	})

	// finalRead returns the messages of the read that held
	// AuthenticationSASLFinal.
	finalRead := func(reads [][]byte) []string {
		t.Helper()
		for _, b := range reads {
			if m := messages(b); slices.Contains(m, "AuthenticationSASLFinal") {
				return m
			}
		}
		t.Fatalf("no read held AuthenticationSASLFinal; reads: %q", reads)
		return nil
	}

	t.Run("welcome", func(t *testing.T) {
		var reads [][]byte
		cc := connConfig(t, r.dsn("acme"))
		cc.DialFunc = ln.dial(&reads)
		conn, err := connectCfg(t, cc)
		if err != nil {
			t.Fatalf("login over a pipe: %v", err)
		}
		if got := queryInt(t, conn, "SELECT 41 + 1"); got != 42 {
			t.Fatalf("SELECT 41 + 1 = %d", got)
		}
		closeConn(conn)
		m := finalRead(reads)
		if len(m) < 4 || m[0] != "AuthenticationSASLFinal" || m[1] != "AuthenticationOk" ||
			m[len(m)-2] != "BackendKeyData" || m[len(m)-1] != "ReadyForQuery" {
			t.Errorf("the read with SASLFinal holds %v; want SASLFinal, AuthenticationOk, ..., BackendKeyData, ReadyForQuery", m)
		}
	})

	t.Run("refusal after a good password", func(t *testing.T) {
		var reads [][]byte
		cc := connConfig(t, r.dsn("acme", "dbname="+tenants["globex"].Database))
		cc.DialFunc = ln.dial(&reads)
		_, err := connectCfg(t, cc)
		wantCode(t, err, "3D000")
		if m := finalRead(reads); !slices.Equal(m, []string{"AuthenticationSASLFinal", "ErrorResponse"}) {
			t.Errorf("the read with SASLFinal holds %v; want SASLFinal and the error together", m)
		}
	})
}
