package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// gateConn blocks the client's SASLResponse (the second 'p' message it
// writes) until gate is closed.
type gateConn struct {
	net.Conn
	ps      atomic.Int32
	reached chan struct{}
	gate    chan struct{}
}

func (c *gateConn) Write(b []byte) (int, error) {
	if len(b) > 0 && b[0] == 'p' && c.ps.Add(1) == 2 {
		close(c.reached)
		<-c.gate
	}
	return c.Conn.Write(b)
}

func gatedConfig(t *testing.T, dsn string) (*pgx.ConnConfig, *gateConn) {
	cc := connConfig(t, dsn)
	gc := &gateConn{reached: make(chan struct{}), gate: make(chan struct{})}
	cc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		gc.Conn = nc
		return gc, nil
	}
	return cc, gc
}

// Wrong-password attempts of one user from one address running at the
// same time are throttled as if they came one after another: at most the
// free failures are checked, the rest wait their turn and are refused.
func TestFailedLoginsThrottledWhenConcurrent(t *testing.T) {
	r := startRouter(t)
	const n = 30
	var wg sync.WaitGroup
	codes := make(chan string, n)
	gates := make([]*gateConn, n)
	for i := 0; i < n; i++ {
		cc, gc := gatedConfig(t, r.dsn("acme", "password=wrong-guess"))
		gates[i] = gc
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := pgx.ConnectConfig(ctx, cc)
			if c != nil {
				c.Close(ctx)
			}
			var pe *pgconn.PgError
			if err != nil && errors.As(err, &pe) {
				codes <- pe.Code
			} else {
				codes <- fmt.Sprint(err)
			}
		}()
	}
	deadline := time.After(3 * time.Second)
	reached := 0
wait:
	for _, g := range gates {
		select {
		case <-g.reached: // this attempt has passed the throttle check
			reached++
		case <-deadline:
			break wait
		}
	}
	t.Logf("%d of %d attempts reached the proof at once", reached, n)
	for _, g := range gates {
		close(g.gate)
	}
	wg.Wait()
	close(codes)
	count := map[string]int{}
	for c := range codes {
		count[c]++
	}
	t.Logf("outcomes: %v", count)
	if count["28P01"] > 5 {
		t.Errorf("%d wrong-password attempts from one address for one user were checked (throttle allows 5 before back-off)", count["28P01"])
	}
}

// Many correct logins of one user from one address at once all succeed.
func TestConcurrentGoodLoginsAllSucceed(t *testing.T) {
	r := startRouter(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := connectCfg(t, connConfig(t, r.dsn("acme")))
			if err != nil {
				errs <- err
				return
			}
			closeConn(c)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Running out of file descriptors (a burst of connections, or anyone
// opening sockets without logging in: nothing bounds unauthenticated
// connections) makes Accept fail with EMFILE, which is temporary. Serve
// must back off and keep serving, not return: cmd/pgbridge exits when
// Serve returns, dropping every tenant's sessions.
func TestServeSurvivesRunningOutOfFiles(t *testing.T) {
	r := startRouter(t)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	fds, _ := os.ReadDir("/proc/self/fd")
	lim := old
	lim.Cur = uint64(len(fds) + 40)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for i := 0; i < 200; i++ {
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	t.Logf("opened %d raw connections (no login)", len(conns))
	time.Sleep(200 * time.Millisecond)
	for _, c := range conns {
		c.Close()
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		r.exited, r.result = true, nil
		t.Fatalf("Serve returned while the router was up, after running out of file descriptors: %v", err)
	case <-time.After(time.Second):
	}
	conn := r.connect(t, "acme")
	if got := queryInt(t, conn, "select 1"); got != 1 {
		t.Fatal(got)
	}
}

// A password message too large for the router (over 8 KiB) or with a
// length below 4 gets FATAL 08P01 like every malformed exchange.
func TestMalformedPasswordMessageGetsAnError(t *testing.T) {
	r := startRouter(t)
	for _, frame := range [][]byte{
		{'p', 0, 0, 0x40, 0}, // 16 KiB SASLInitialResponse
		{'p', 0, 0, 0, 2},    // length below 4
	} {
		nc := rawDial(t, r)
		fe := pgproto3.NewFrontend(nc, nc)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{"user": tenants["acme"].Login, "database": tenants["acme"].Database}})
		_ = fe.Flush()
		if _, err := nc.Write(frame); err != nil {
			t.Fatal(err)
		}
		msgs, err := readUntilClosed(nc, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 {
			t.Errorf("frame % x: got %v, want one FATAL 08P01", frame, msgs)
			continue
		}
		if e, ok := msgs[0].(*pgproto3.ErrorResponse); !ok || e.Code != "08P01" {
			t.Errorf("frame % x: got %#v", frame, msgs[0])
		}
	}
}

// saltOf runs the first half of a SCRAM exchange as user and returns the
// salt and iteration count the router hands out: no password needed.
func saltOf(t *testing.T, r *router, user, db string) string {
	t.Helper()
	nc := rawDial(t, r)
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	fe := pgproto3.NewFrontend(nc, nc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": user, "database": db}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := fe.Receive(); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
		t.Fatalf("got %T", m)
	}
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=abcdefghijkl")})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	m, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	c, ok := m.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatalf("got %T", m)
	}
	s := string(c.Data)
	return s[strings.Index(s, ",s="):]
}

// Whether a name is a tenant's login or an admin's must not show before
// authentication: the salt a name gets does not depend on the database it
// asks for, and a login with the right password for a database it may not
// use gets the same 28P01 as a wrong password.
func TestSaltDoesNotDependOnTheDatabase(t *testing.T) {
	r := startRouter(t)
	ti := tenants["acme"]
	for _, user := range []string{ti.Login, adminUser, "no_such_user"} {
		if a, b := saltOf(t, r, user, "pgbridge"), saltOf(t, r, user, ti.Database); a != b {
			t.Errorf("%s: salt %s for the console, %s for a tenant database", user, a, b)
		}
	}
	_, err := connectCfg(t, connConfig(t, r.dsn("acme", "dbname=pgbridge")))
	wantCode(t, err, "28P01")
	cc := connConfig(t, r.dsn("acme"))
	cc.User, cc.Password = adminUser, adminPassword
	_, err = connectCfg(t, cc)
	wantCode(t, err, "28P01")
}
