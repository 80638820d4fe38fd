package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
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

// authMessages lists the Authentication subtypes (R messages) in b, and
// whether b holds an ErrorResponse and a ReadyForQuery.
func authMessages(b []byte) (auth []uint32, errorResponse, ready bool) {
	for len(b) >= 5 {
		n := int(uint32(b[1])<<24|uint32(b[2])<<16|uint32(b[3])<<8|uint32(b[4])) + 1
		if n > len(b) || n < 5 {
			break
		}
		switch b[0] {
		case 'R':
			if n >= 9 {
				auth = append(auth, uint32(b[5])<<24|uint32(b[6])<<16|uint32(b[7])<<8|uint32(b[8]))
			}
		case 'E':
			errorResponse = true
		case 'Z':
			ready = true
		}
		b = b[n:]
	}
	return auth, errorResponse, ready
}

const (
	authOK        = 0
	authSASLFinal = 12
)

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

	finalRead := func(reads [][]byte) (auth []uint32, errorResponse, ready bool) {
		t.Helper()
		for _, b := range reads {
			a, e, z := authMessages(b)
			for _, code := range a {
				if code == authSASLFinal {
					return a, e, z
				}
			}
		}
		t.Fatalf("no read held AuthenticationSASLFinal; reads: %q", reads)
		return nil, false, false
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
		auth, _, ready := finalRead(reads)
		if len(auth) != 2 || auth[1] != authOK || !ready {
			t.Errorf("the read with SASLFinal holds auth messages %v, ReadyForQuery %v; want SASLFinal, AuthenticationOk and ReadyForQuery together", auth, ready)
		}
	})

	t.Run("refusal after a good password", func(t *testing.T) {
		var reads [][]byte
		cc := connConfig(t, r.dsn("acme", "dbname="+tenants["globex"].Database))
		cc.DialFunc = ln.dial(&reads)
		_, err := connectCfg(t, cc)
		wantCode(t, err, "3D000")
		auth, errorResponse, _ := finalRead(reads)
		if len(auth) != 1 || !errorResponse {
			t.Errorf("the read with SASLFinal holds auth messages %v, ErrorResponse %v; want SASLFinal and the error together", auth, errorResponse)
		}
	})
}
