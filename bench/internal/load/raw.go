package load

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// scramKeys are what a SCRAM-SHA-256 client derives from the password and
// the server's salt and iteration count; only this derivation is slow.
type scramKeys struct {
	clientKey [32]byte
	storedKey [32]byte
	serverKey [32]byte
}

type keyID struct {
	password, salt string
	iterations     int
}

// keyCache keeps scramKeys per password, salt and iteration count. The
// number of entries is bounded by the logins of a spec (one salt each).
type keyCache struct {
	mu   sync.Mutex
	keys map[keyID]scramKeys
}

func newKeyCache() *keyCache { return &keyCache{keys: map[keyID]scramKeys{}} }

func (c *keyCache) get(password string, salt []byte, iterations int) (scramKeys, error) {
	id := keyID{password, string(salt), iterations}
	c.mu.Lock()
	k, ok := c.keys[id]
	c.mu.Unlock()
	if ok {
		return k, nil
	}
	// Passwords here are ASCII, which SASLprep leaves alone.
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, 32)
	if err != nil {
		return scramKeys{}, err
	}
	k.clientKey = hmacSum(salted, "Client Key")
	k.storedKey = sha256.Sum256(k.clientKey[:])
	k.serverKey = hmacSum(salted, "Server Key")
	c.mu.Lock()
	c.keys[id] = k
	c.mu.Unlock()
	return k, nil
}

func hmacSum(key []byte, msg string) [32]byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// rawConn is a logged-in connection without a driver on top.
type rawConn struct {
	net.Conn
	fe *pgproto3.Frontend // nil once dropped to save memory
}

// rawConnect logs in as l and returns once the server sent ReadyForQuery.
func rawConnect(ctx context.Context, l Login, keys *keyCache) (*rawConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(l.Host, strconv.Itoa(l.Port)))
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	c := &rawConn{Conn: nc, fe: pgproto3.NewFrontend(nc, nc)}
	if err := c.startup(l, keys); err != nil {
		_ = nc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, err
	}
	if !stop() {
		_ = nc.Close()
		return nil, ctx.Err()
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

func (c *rawConn) startup(l Login, keys *keyCache) error {
	c.fe.Send(&pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters:      map[string]string{"user": l.User, "database": l.Database},
	})
	if err := c.fe.Flush(); err != nil {
		return err
	}
	var (
		nonce, clientFirstBare string
		serverSignature        [32]byte
		sawFinal               bool
	)
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationOk:
		case *pgproto3.AuthenticationSASL:
			if !slices.Contains(m.AuthMechanisms, "SCRAM-SHA-256") {
				return fmt.Errorf("server offers %v, not SCRAM-SHA-256", m.AuthMechanisms)
			}
			b := make([]byte, 18)
			_, _ = rand.Read(b)
			nonce = base64.StdEncoding.EncodeToString(b)
			clientFirstBare = "n=,r=" + nonce
			c.fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,," + clientFirstBare)})
			if err := c.fe.Flush(); err != nil {
				return err
			}
		case *pgproto3.AuthenticationSASLContinue:
			serverFirst := string(m.Data)
			final, sig, err := clientFinal(serverFirst, clientFirstBare, nonce, l.Password, keys)
			if err != nil {
				return err
			}
			serverSignature = sig
			c.fe.Send(&pgproto3.SASLResponse{Data: []byte(final)})
			if err := c.fe.Flush(); err != nil {
				return err
			}
		case *pgproto3.AuthenticationSASLFinal:
			want := "v=" + base64.StdEncoding.EncodeToString(serverSignature[:])
			if string(m.Data) != want {
				return errors.New("server signature does not match: not the server we meant")
			}
			sawFinal = true
		case *pgproto3.ParameterStatus, *pgproto3.BackendKeyData, *pgproto3.NoticeResponse:
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			if nonce != "" && !sawFinal {
				return errors.New("server skipped the SCRAM final message")
			}
			return nil
		default:
			return fmt.Errorf("unexpected %T during login", msg)
		}
	}
}

// clientFinal computes the client-final-message for serverFirst and the
// server signature to expect.
func clientFinal(serverFirst, clientFirstBare, nonce, password string, keys *keyCache) (string, [32]byte, error) {
	var fullNonce, saltText, iterText string
	for _, attr := range strings.Split(serverFirst, ",") {
		switch {
		case strings.HasPrefix(attr, "r="):
			fullNonce = attr[2:]
		case strings.HasPrefix(attr, "s="):
			saltText = attr[2:]
		case strings.HasPrefix(attr, "i="):
			iterText = attr[2:]
		}
	}
	if !strings.HasPrefix(fullNonce, nonce) || len(fullNonce) == len(nonce) {
		return "", [32]byte{}, errors.New("server nonce does not extend ours")
	}
	salt, err := base64.StdEncoding.DecodeString(saltText)
	if err != nil {
		return "", [32]byte{}, fmt.Errorf("bad salt: %w", err)
	}
	iterations, err := strconv.Atoi(iterText)
	if err != nil || iterations < 1 {
		return "", [32]byte{}, fmt.Errorf("bad iteration count %q", iterText)
	}
	k, err := keys.get(password, salt, iterations)
	if err != nil {
		return "", [32]byte{}, err
	}
	withoutProof := "c=biws,r=" + fullNonce // biws = base64("n,,")
	authMessage := clientFirstBare + "," + serverFirst + "," + withoutProof
	sig := hmacSum(k.storedKey[:], authMessage)
	var proof [32]byte
	for i := range proof {
		proof[i] = k.clientKey[i] ^ sig[i]
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof[:]),
		hmacSum(k.serverKey[:], authMessage), nil
}

// simpleQuery runs sql with the simple protocol and waits for ReadyForQuery.
func (c *rawConn) simpleQuery(ctx context.Context, sql string) error {
	if c.fe == nil {
		c.fe = pgproto3.NewFrontend(c.Conn, c.Conn)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
		defer func() { _ = c.SetDeadline(time.Time{}) }()
	}
	c.fe.Send(&pgproto3.Query{String: sql})
	if err := c.fe.Flush(); err != nil {
		return err
	}
	var qerr error
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			qerr = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			return qerr
		}
	}
}

// dropFrontend lets the connection's read buffer go while it sits idle.
func (c *rawConn) dropFrontend() { c.fe = nil }

// close says goodbye (Terminate) and closes the socket.
func (c *rawConn) close() {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{'X', 0, 0, 0, 4})
	_ = c.Conn.Close()
}

// Ping logs in as l, runs one query and disconnects: a readiness probe.
func Ping(ctx context.Context, l Login) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := rawConnect(ctx, l, newKeyCache())
	if err != nil {
		return err
	}
	defer c.close()
	return c.simpleQuery(ctx, "SELECT 1")
}
