package scram

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// RFC 7677 section 3: user "user", password "pencil".
const (
	rfcSalt          = "W22ZaJ0SNY7soEsUEjb6gQ=="
	rfcClientNonce   = "rOprNGfwEbeRWgbNEkqO"
	rfcServerNonce   = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	rfcClientFirst   = "n,,n=user,r=" + rfcClientNonce
	rfcServerFirst   = "r=" + rfcClientNonce + rfcServerNonce + ",s=" + rfcSalt + ",i=4096"
	rfcClientFinal   = "c=biws,r=" + rfcClientNonce + rfcServerNonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcServerFinal   = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	rfcVerifierKeys  = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
	rfcVerifierText  = "SCRAM-SHA-256$4096:" + rfcSalt + "$" + rfcVerifierKeys
	testMockSecret   = "0123456789abcdef0123456789abcdef"
	testUserPassword = "correct horse battery staple"
)

func rfcVerifier(t testing.TB) Verifier {
	t.Helper()
	salt, err := base64.StdEncoding.DecodeString(rfcSalt)
	if err != nil {
		t.Fatal(err)
	}
	return NewVerifier("pencil", salt, 4096)
}

func TestRFC7677Vector(t *testing.T) {
	v := rfcVerifier(t)
	// The keys were computed independently (Python's hashlib and hmac).
	if got := v.String(); got != rfcVerifierText {
		t.Fatalf("NewVerifier = %s, want %s", got, rfcVerifierText)
	}

	s := newServerWithNonce(v, rfcServerNonce)
	first, err := s.ClientFirst([]byte(rfcClientFirst))
	if err != nil || string(first) != rfcServerFirst {
		t.Fatalf("ClientFirst = %q, %v; want %q", first, err, rfcServerFirst)
	}
	final, err := s.ClientFinal([]byte(rfcClientFinal))
	if err != nil || string(final) != rfcServerFinal {
		t.Fatalf("ClientFinal = %q, %v; want %q", final, err, rfcServerFinal)
	}

	// The test client reproduces the RFC's client side too.
	c := &testClient{user: "user", password: "pencil", nonce: rfcClientNonce, gs2: "n,,"}
	if got := string(c.first()); got != rfcClientFirst {
		t.Fatalf("test client first = %q, want %q", got, rfcClientFirst)
	}
	clientFinal, err := c.final([]byte(rfcServerFirst))
	if err != nil || string(clientFinal) != rfcClientFinal {
		t.Fatalf("test client final = %q, %v; want %q", clientFinal, err, rfcClientFinal)
	}
	if err := c.verify([]byte(rfcServerFinal)); err != nil {
		t.Fatal(err)
	}
}

// testClient is the client side of RFC 5802, written independently of the
// server code (it derives keys with crypto/pbkdf2), for ASCII passwords.
type testClient struct {
	user, password, nonce string
	gs2                   string // "n,," or "y,,"

	clientFirstBare string
	serverSignature []byte
}

func (c *testClient) first() []byte {
	c.clientFirstBare = "n=" + c.user + ",r=" + c.nonce
	return []byte(c.gs2 + c.clientFirstBare)
}

func (c *testClient) final(serverFirst []byte) ([]byte, error) {
	var nonce, saltText, iterText string
	for _, attr := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(attr, "r="):
			nonce = attr[2:]
		case strings.HasPrefix(attr, "s="):
			saltText = attr[2:]
		case strings.HasPrefix(attr, "i="):
			iterText = attr[2:]
		}
	}
	if !strings.HasPrefix(nonce, c.nonce) || len(nonce) <= len(c.nonce) {
		return nil, fmt.Errorf("server nonce %q does not extend client nonce", nonce)
	}
	salt, err := base64.StdEncoding.DecodeString(saltText)
	if err != nil {
		return nil, err
	}
	iterations, err := strconv.Atoi(iterText)
	if err != nil {
		return nil, err
	}
	salted, err := pbkdf2.Key(sha256.New, c.password, salt, iterations, 32)
	if err != nil {
		return nil, err
	}
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte(c.gs2)) + ",r=" + nonce
	authMessage := c.clientFirstBare + "," + string(serverFirst) + "," + withoutProof

	clientKey := testHMAC(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	proof := testHMAC(storedKey[:], authMessage)
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	c.serverSignature = testHMAC(testHMAC(salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func (c *testClient) verify(serverFinal []byte) error {
	if want := "v=" + base64.StdEncoding.EncodeToString(c.serverSignature); string(serverFinal) != want {
		return fmt.Errorf("server-final-message %q, want %q", serverFinal, want)
	}
	return nil
}

func testHMAC(key []byte, msg string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msg))
	return mac.Sum(nil)
}

// exchange runs the test client against a Server and returns the server's
// error, having checked the server's signature on success.
func exchange(t *testing.T, v Verifier, password, gs2 string) error {
	t.Helper()
	c := &testClient{user: "", password: password, nonce: "fyko+d2lbbFgONRv9qkxdawL", gs2: gs2}
	s := NewServer(v)
	first, err := s.ClientFirst(c.first())
	if err != nil {
		return err
	}
	clientFinal, err := c.final(first)
	if err != nil {
		t.Fatalf("test client: %v", err)
	}
	final, err := s.ClientFinal(clientFinal)
	if err != nil {
		return err
	}
	if err := c.verify(final); err != nil {
		t.Fatal(err)
	}
	return nil
}

func TestExchange(t *testing.T) {
	good, err := GenerateVerifier(testUserPassword)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		v        Verifier
		password string
		gs2      string
		wantErr  error
	}{
		{"right password", good, testUserPassword, "n,,", nil},
		{"client could bind but thinks server cannot", good, testUserPassword, "y,,", nil},
		{"RFC verifier", rfcVerifier(t), "pencil", "n,,", nil},
		{"one iteration", NewVerifier("x", []byte{1}, 1), "x", "n,,", nil},
		{"wrong password", good, "correct horse battery stapler", "n,,", ErrAuthFailed},
		{"empty password", good, "", "n,,", ErrAuthFailed},
		{"unknown user", MockVerifier("mallory", []byte(testMockSecret)), testUserPassword, "n,,", ErrAuthFailed},
		{"unknown user, empty password", MockVerifier("mallory", []byte(testMockSecret)), "", "n,,", ErrAuthFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := exchange(t, tt.v, tt.password, tt.gs2); err != tt.wantErr {
				t.Fatalf("exchange error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestClientFirstRejects(t *testing.T) {
	v := rfcVerifier(t)
	tests := []struct {
		name, msg, wantErr string
	}{
		{"empty", "", "empty message"},
		{"garbage", "hello", "bad channel binding flag"},
		{"binary", "\xff\xfe\x00", "NUL"},
		{"NUL in user name", "n,,n=a\x00b,r=abc", "NUL"},
		{"channel binding", "p=tls-server-end-point,,n=,r=abc", "channel binding"},
		{"unknown flag", "x,,n=,r=abc", "bad channel binding flag"},
		{"flag too long", "nn,,n=,r=abc", "bad channel binding flag"},
		{"authzid", "n,a=bob,n=,r=abc", "authorization identity"},
		{"junk in authzid place", "n,b,n=,r=abc", "bad gs2 header"},
		{"gs2 header only", "n,,", "too few attributes"},
		{"no nonce", "n,,n=user", "too few attributes"},
		{"mandatory extension", "n,,m=foo,n=,r=abc", "unsupported SCRAM extension"},
		{"no user name", "n,,r=abc,n=", "user name expected"},
		{"empty nonce", "n,,n=,r=", "nonce expected"},
		{"nonce with space", "n,,n=,r=ab c", "nonce expected"},
		{"nonce with non-ASCII", "n,,n=,r=ab\u00e9", "nonce expected"},
		{"nonce attribute misnamed", "n,,n=,s=abc", "nonce expected"},
		{"extension after nonce", "n,,n=,r=abc,x=1", "extensions"},
		{"trailing comma", "n,,n=,r=abc,", "extensions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(v)
			_, err := s.ClientFirst([]byte(tt.msg))
			if err == nil || errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ClientFirst(%q) error = %v, want one mentioning %q", tt.msg, err, tt.wantErr)
			}
			// The exchange is over.
			if _, err := s.ClientFinal([]byte(rfcClientFinal)); err == nil {
				t.Fatal("ClientFinal after failed ClientFirst succeeded")
			}
		})
	}
}

func TestClientFinalRejects(t *testing.T) {
	const nonce = rfcClientNonce + rfcServerNonce
	const proof = ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	tests := []struct {
		name, msg string
		wantErr   string // "" means ErrAuthFailed
	}{
		{"empty", "", "empty message"},
		{"garbage", "garbage", "channel binding expected"},
		{"NUL", "c=biws,r=" + nonce + proof + "\x00", "NUL"},
		{"tampered c=", "c=eSws,r=" + nonce + proof, "does not match the gs2 header"},
		{"c= with channel binding data", "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAAA,r=" + nonce + proof, "does not match the gs2 header"},
		{"no r=", "c=biws", "nonce expected"},
		{"misnamed r=", "c=biws,x=" + nonce + proof, "nonce expected"},
		{"tampered r=", "c=biws,r=" + nonce + "x" + proof, "nonce"},
		{"client nonce only", "c=biws,r=" + rfcClientNonce + proof, "nonce"},
		{"missing p=", "c=biws,r=" + nonce, "proof expected"},
		{"empty p=", "c=biws,r=" + nonce + ",p=", "proof is not base64"},
		{"p= not last", "c=biws,r=" + nonce + proof + ",x=1", "proof expected"},
		{"extension before p=", "c=biws,r=" + nonce + ",x=1" + proof, "extensions"},
		{"proof bad base64", "c=biws,r=" + nonce + ",p=!!!!", "proof is not base64"},
		{"proof unpadded", "c=biws,r=" + nonce + strings.TrimSuffix(proof, "="), "proof is not base64"},
		{"proof too short", "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndQ==", "proof is not base64"},
		{"proof with line break", "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjf\nMHgsqmmiz7AndVQ=", "proof is not base64"},
		{"wrong proof", "c=biws,r=" + nonce + ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", ""},
		{"proof stray bits", "c=biws,r=" + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVR=", "proof is not base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServerWithNonce(rfcVerifier(t), rfcServerNonce)
			if _, err := s.ClientFirst([]byte(rfcClientFirst)); err != nil {
				t.Fatal(err)
			}
			final, err := s.ClientFinal([]byte(tt.msg))
			switch {
			case final != nil:
				t.Fatalf("ClientFinal(%q) returned %q", tt.msg, final)
			case tt.wantErr == "" && err != ErrAuthFailed:
				t.Fatalf("ClientFinal(%q) error = %v, want ErrAuthFailed", tt.msg, err)
			case tt.wantErr != "" && (err == nil || errors.Is(err, ErrAuthFailed) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ClientFinal(%q) error = %v, want one mentioning %q", tt.msg, err, tt.wantErr)
			}
		})
	}
}

func TestAuthMessageCoversClientFirst(t *testing.T) {
	// The RFC proof is bound to user name "user": a server that saw another
	// client-first-message must refuse it.
	s := newServerWithNonce(rfcVerifier(t), rfcServerNonce)
	if _, err := s.ClientFirst([]byte("n,,n=other,r=" + rfcClientNonce)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClientFinal([]byte(rfcClientFinal)); err != ErrAuthFailed {
		t.Fatalf("error = %v, want ErrAuthFailed", err)
	}
}

func TestOutOfOrder(t *testing.T) {
	s := newServerWithNonce(rfcVerifier(t), rfcServerNonce)
	if _, err := s.ClientFinal([]byte(rfcClientFinal)); err == nil {
		t.Fatal("ClientFinal before ClientFirst succeeded")
	}

	s = newServerWithNonce(rfcVerifier(t), rfcServerNonce)
	if _, err := s.ClientFirst([]byte(rfcClientFirst)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClientFirst([]byte(rfcClientFirst)); err == nil {
		t.Fatal("second ClientFirst succeeded")
	}
	if _, err := s.ClientFinal([]byte(rfcClientFinal)); err == nil {
		t.Fatal("ClientFinal after a refused message succeeded")
	}

	s = newServerWithNonce(rfcVerifier(t), rfcServerNonce)
	s.ClientFirst([]byte(rfcClientFirst))
	if _, err := s.ClientFinal([]byte(rfcClientFinal)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClientFinal([]byte(rfcClientFinal)); err == nil {
		t.Fatal("replayed ClientFinal succeeded")
	}
}

func TestServerWithoutVerifier(t *testing.T) {
	if _, err := NewServer(Verifier{}).ClientFirst([]byte(rfcClientFirst)); err == nil {
		t.Fatal("ClientFirst with a zero verifier succeeded")
	}
}

func TestServerNonce(t *testing.T) {
	v := rfcVerifier(t)
	seen := map[string]bool{}
	for range 100 {
		first, err := NewServer(v).ClientFirst([]byte("n,,n=,r=abc"))
		if err != nil {
			t.Fatal(err)
		}
		nonce, _, _ := strings.Cut(strings.TrimPrefix(string(first), "r=abc"), ",")
		if len(nonce) != 24 || !isPrintable(nonce) || seen[nonce] {
			t.Fatalf("server nonce %q: want 24 printable characters, never repeated", nonce)
		}
		seen[nonce] = true
	}
}

func TestParseVerifier(t *testing.T) {
	v, err := ParseVerifier(rfcVerifierText)
	if err != nil {
		t.Fatal(err)
	}
	want := rfcVerifier(t)
	if v.Iterations != want.Iterations || !bytes.Equal(v.Salt, want.Salt) || v.StoredKey != want.StoredKey || v.ServerKey != want.ServerKey {
		t.Fatalf("ParseVerifier = %+v, want %+v", v, want)
	}
	if got := v.String(); got != rfcVerifierText {
		t.Fatalf("String = %s, want %s", got, rfcVerifierText)
	}
	if err := exchange(t, v, "pencil", "n,,"); err != nil {
		t.Fatal(err)
	}
}

func TestParseVerifierRejects(t *testing.T) {
	const keys = "$" + rfcVerifierKeys
	const stored = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "does not start with"},
		{"md5", "md5a3556571e93b0d20722ba62be61e8c2d", "does not start with"},
		{"SHA-1", "SCRAM-SHA-1$4096:" + rfcSalt + keys, "does not start with"},
		{"lower case", "scram-sha-256$4096:" + rfcSalt + keys, "does not start with"},
		{"no keys", "SCRAM-SHA-256$4096:" + rfcSalt, "no '$'"},
		{"no salt", "SCRAM-SHA-256$4096" + keys, "no ':' between iteration count and salt"},
		{"one key", "SCRAM-SHA-256$4096:" + rfcSalt + "$" + stored, "no ':' between StoredKey"},
		{"zero iterations", "SCRAM-SHA-256$0:" + rfcSalt + keys, "iteration count"},
		{"negative iterations", "SCRAM-SHA-256$-1:" + rfcSalt + keys, "iteration count"},
		{"signed iterations", "SCRAM-SHA-256$+4096:" + rfcSalt + keys, "iteration count"},
		{"leading zero", "SCRAM-SHA-256$04096:" + rfcSalt + keys, "iteration count"},
		{"spaced iterations", "SCRAM-SHA-256$ 4096:" + rfcSalt + keys, "iteration count"},
		{"empty iterations", "SCRAM-SHA-256$:" + rfcSalt + keys, "iteration count"},
		{"hex iterations", "SCRAM-SHA-256$0x1000:" + rfcSalt + keys, "iteration count"},
		{"huge iterations", "SCRAM-SHA-256$16777217:" + rfcSalt + keys, "iteration count"},
		{"overflowing iterations", "SCRAM-SHA-256$99999999999999999999999:" + rfcSalt + keys, "iteration count"},
		{"empty salt", "SCRAM-SHA-256$4096:" + keys, "salt"},
		{"salt bad base64", "SCRAM-SHA-256$4096:W22ZaJ0S*NY7soEsUEjb6gQ=" + keys, "salt"},
		{"salt unpadded", "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ" + keys, "salt"},
		{"salt stray bits", "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gR==" + keys, "salt"},
		{"salt line break", "SCRAM-SHA-256$4096:W22ZaJ0SNY7s\noEsUEjb6gQ==" + keys, "salt"},
		{"StoredKey short", "SCRAM-SHA-256$4096:" + rfcSalt + "$" + rfcSalt + ":" + stored, "StoredKey"},
		{"StoredKey bad base64", "SCRAM-SHA-256$4096:" + rfcSalt + "$%%%:" + stored, "StoredKey"},
		{"ServerKey empty", "SCRAM-SHA-256$4096:" + rfcSalt + "$" + stored + ":", "ServerKey"},
		{"ServerKey long", "SCRAM-SHA-256$4096:" + rfcSalt + "$" + stored + ":" + stored + "AAAA", "ServerKey"},
		{"extra field", "SCRAM-SHA-256$4096:" + rfcSalt + keys + ":" + stored, "ServerKey"},
		{"extra section", "SCRAM-SHA-256$4096:" + rfcSalt + keys + "$x", "ServerKey"},
		{"trailing newline", rfcVerifierText + "\n", "ServerKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ParseVerifier(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseVerifier error = %v, want one mentioning %q", err, tt.wantErr)
			}
			if !v.IsZero() {
				t.Fatalf("ParseVerifier returned %+v with its error", v)
			}
			// Errors never repeat the secret.
			if strings.Contains(err.Error(), stored) || strings.Contains(err.Error(), rfcSalt) {
				t.Fatalf("error %q quotes the verifier", err)
			}
		})
	}
}

func TestParseVerifierIterationBounds(t *testing.T) {
	for _, n := range []int{1, 4096, 600000, maxIterations} {
		text := "SCRAM-SHA-256$" + strconv.Itoa(n) + ":" + rfcSalt + "$" + rfcVerifierKeys
		v, err := ParseVerifier(text)
		if err != nil || v.Iterations != n || v.String() != text {
			t.Fatalf("ParseVerifier(%d iterations) = %+v, %v", n, v, err)
		}
	}
}

func TestVerifierRoundTrip(t *testing.T) {
	for _, v := range []Verifier{
		rfcVerifier(t),
		NewVerifier("", []byte{0}, 1),
		NewVerifier("p", bytes.Repeat([]byte{0xff}, 64), 10),
		MockVerifier("alice", []byte(testMockSecret)),
	} {
		got, err := ParseVerifier(v.String())
		if err != nil {
			t.Fatalf("ParseVerifier(%s): %v", v, err)
		}
		if got.String() != v.String() || got.IsZero() {
			t.Fatalf("round trip of %s gave %s", v, got)
		}
	}
}

func TestIsZero(t *testing.T) {
	if !(Verifier{}).IsZero() {
		t.Fatal("zero Verifier is not IsZero")
	}
	if !(Verifier{Salt: []byte{}}).IsZero() {
		t.Fatal("Verifier with empty non-nil salt is not IsZero")
	}
	if rfcVerifier(t).IsZero() || (Verifier{Iterations: 1}).IsZero() || (Verifier{ServerKey: [32]byte{1}}).IsZero() {
		t.Fatal("non-zero Verifier is IsZero")
	}
}

func TestNewVerifierPanics(t *testing.T) {
	for _, tt := range []struct {
		salt       []byte
		iterations int
	}{
		{nil, 4096}, {[]byte{1}, 0}, {[]byte{1}, -1}, {[]byte{1}, maxIterations + 1},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewVerifier(salt %x, %d iterations) did not panic", tt.salt, tt.iterations)
				}
			}()
			NewVerifier("p", tt.salt, tt.iterations)
		}()
	}
}

func TestNewVerifierCopiesSalt(t *testing.T) {
	salt := []byte("0123456789abcdef")
	v := NewVerifier("p", salt, 1)
	salt[0] = 'x'
	if v.Salt[0] != '0' {
		t.Fatal("NewVerifier keeps the caller's salt slice")
	}
}

func TestGenerateVerifier(t *testing.T) {
	a, err := GenerateVerifier(testUserPassword)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateVerifier(testUserPassword)
	if err != nil {
		t.Fatal(err)
	}
	if a.Iterations != 4096 || len(a.Salt) != 16 {
		t.Fatalf("GenerateVerifier: %d iterations, %d bytes of salt; want 4096 and 16", a.Iterations, len(a.Salt))
	}
	if bytes.Equal(a.Salt, b.Salt) || a.StoredKey == b.StoredKey {
		t.Fatal("two generated verifiers share salt or keys")
	}
	if a.String() != NewVerifier(testUserPassword, a.Salt, 4096).String() {
		t.Fatal("GenerateVerifier disagrees with NewVerifier for its own salt")
	}
}

func TestMockVerifier(t *testing.T) {
	secret := []byte(testMockSecret)
	alice := MockVerifier("alice", secret)
	real, err := GenerateVerifier("whatever")
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case alice.String() != MockVerifier("alice", secret).String():
		t.Fatal("MockVerifier is not deterministic")
	case bytes.Equal(alice.Salt, MockVerifier("bob", secret).Salt):
		t.Fatal("two users got the same mock salt")
	case bytes.Equal(alice.Salt, MockVerifier("alice", []byte("another secret of thirty-two b.")).Salt):
		t.Fatal("two secrets gave the same mock salt")
	case alice.Iterations != real.Iterations || len(alice.Salt) != len(real.Salt):
		t.Fatalf("mock verifier has %d iterations and %d bytes of salt; real ones %d and %d",
			alice.Iterations, len(alice.Salt), real.Iterations, len(real.Salt))
	case alice.IsZero():
		t.Fatal("mock verifier is zero")
	}
}

// postgresSecrets are the secrets PostgreSQL 15.18 stored in
// pg_authid.rolpassword (password_encryption = scram-sha-256, UTF8 database)
// for these passwords, and what its SASLprep made of each password.
var postgresSecrets = []struct {
	name, password, prepared, secret string
}{
	{"ASCII", "pencil", "pencil",
		"SCRAM-SHA-256$4096:mVwLWSQrzqZbh8IGJ84ySQ==$1D1hc3bd0cPQoFsMx11g3zxMUnIK81j3M0yoFTr4JQ0=:X/VoUIqaJkqclQXyBZoe8mYOTVqx4/ZEsgMh+5qc868="},
	{"precomposed", "p\u00E4ssw\u00F6rd", "p\u00E4ssw\u00F6rd",
		"SCRAM-SHA-256$4096:KSkZ4lwLYcqHGydr91FqJQ==$+dYi0BMqiWpRzIJfhHPr42qQHBM/Q6mhQyTTsFFKxeo=:3SL1hDj7ySH5WgTY/5dVHOtjgjyKJzifDC2J1fGcdhU="},
	{"decomposed", "pa\u0308sswo\u0308rd", "p\u00E4ssw\u00F6rd",
		"SCRAM-SHA-256$4096:Nc7RXxaZ4IjRabGx5GeyMw==$Oxb0jd7zMa6C1xiP0IXJRn9vCDy58eYj5e8ktezKIJQ=:dWzG27j2VTBfjs0MjlRJxPxwHrRyod+MZUog8/JsXaA="},
	{"combining ring", "A\u030A", "\u00C5",
		"SCRAM-SHA-256$4096:VfttERT9G7mGTmcm0HLw4w==$T1R9JK+0JHanujMTxiSvXULjKxwm3lE3iR96wLQnv/0=:LLerldD2msPLMAZK15/tpqqK3K2qo6zGcmcbsK26TBg="},
	{"compatibility form", "\u2168", "IX",
		"SCRAM-SHA-256$4096:NNibChhBycAwlVaHRMDxLQ==$5/6cwMq59ss6Tkv9v89TymfDwMfCn92tPQKvoa3ful0=:4nhduGipctd52SVS6KmPGPPWpieNiljzxj5jmxXPGsM="},
	{"full width", "\uFF30\uFF41\uFF53\uFF53", "Pass",
		"SCRAM-SHA-256$4096:LfHPygFdZRnoVfnzlMkvrQ==$vJ4FzBvSElSBRwOD57To72VGpq6EA3C6hnvte+F+RPw=:5qRRNwoQQHUIl+bVBkj9DD+iDC5ydYruddOHyBQnf5o="},
	{"ligature", "\uFB01x", "fix",
		"SCRAM-SHA-256$4096:XVFwb4TdOCL3HPP8uraeUQ==$+HX/K+hXfHmemY9vQEseLoarc2Lw7XbJTIChmNKiyE0=:zlrlQ9LUiDTS3PqFvy96BEYpTRU15U5Cots8SNYLoL8="},
	{"soft hyphen dropped", "I\u00ADX", "IX",
		"SCRAM-SHA-256$4096:XW/sCUCj8gaD8dYQDPNxGw==$SZKS1V4CnGqnac1QNTQONqcm0jZxjlcUIpjkjREg/Lc=:pQk31t5aXOpqQ+FmHFOtKeeiTSn5exJ+et/7xYxAcbk="},
	{"no-break space", "a\u00A0b", "a b",
		"SCRAM-SHA-256$4096:C3ufDmxLLHkWC3N5PyHytw==$bN/BApSmZy483TqUggfQE/cmFMYwI5LL7N4IugxGyes=:90FVxaH5htoKq3F7Dt9DX1hWZl/BuvFudvjnko5AL+c="},
	{"zero-width space", "a\u200Bb", "a b",
		"SCRAM-SHA-256$4096:+WrYAE1c8EvM5eZnNjO8Pg==$2G26YppXN4JgQVDPdZmsVwGdoESQUaIrvFp86YQ7XYo=:ISLVzk9m5JsyhACyxgGSDqR+tGRqtlRVQF3sslCunJw="},
	{"nothing left: raw", "\u00AD", "\u00AD",
		"SCRAM-SHA-256$4096:MZU3oGgy69uoPnYE6dKklg==$6Pu1hK8Uf+uEirjyyrXtjwMZckp+2Wudd8TvfLGamGw=:HBreBp0tiM+j4MXHJGbYww/cYEbUmZA1Phk/9Wha2O0="},
	{"unassigned in Unicode 3.2: raw", "\uFB01\U0001F600", "\uFB01\U0001F600",
		"SCRAM-SHA-256$4096:5yU/8K1JsSSCEEEtSJNEmw==$UKa67shVQigd40H0XZ3f061GQm/EgG/jq5/nveleEgQ=:Es9UVlIgc4vI3V3iNe+0qWXdKlcAC+t2M/4s8P+WbTQ="},
	{"control character: raw", "\u00E9\u0007\uFB01", "\u00E9\u0007\uFB01",
		"SCRAM-SHA-256$4096:vgZ1VUY/oWmj1k1Sah7MHA==$5g7nUr317IsyizSpg4oNz1cOCMFCgwjQTTiI6ncbN18=:coKp60o1FbAQeUIO75jAQ2ZOiSXmzTpndVu5IVnIG6w="},
	{"private use: raw", "\uE000\uFB01", "\uE000\uFB01",
		"SCRAM-SHA-256$4096:rlXrF2AvrlSs0F8vH7kyVg==$n8HL5G/RJjjuxaW6f8bhLB1BMOTkc0nMlEOzLsV0LFg=:kXjEaPQ1DYrnOtGNS0vWj5hqTdhPtnEz966Oy7LDP6A="},
	{"right-to-left", "\u05D0\u00AD\u05D1", "\u05D0\u05D1",
		"SCRAM-SHA-256$4096:mXLjrnXIUY/m9w23YnF0xg==$SaCrQPxPAHI9HfUDj/IZRU0ija9Ehtlx9t4RC/eDXkk=:Z3qyT6Q7XONONBODqDcA88W+A/owukFltBYtKurHxMo="},
	{"right-to-left presentation form", "\uFEF5\u0627", "\u0644\u0622\u0627",
		"SCRAM-SHA-256$4096:oWKoi8Et8NikatQGkkOjwg==$0aiXsvi4abp9NjjdTN1QoN7+HYKH6czxWwEIMNFyPt0=:Vjion8dDFChMNAkcV+ZcmGfwBFyLpjcxxrrNbm2UPi8="},
	{"mixed directions: raw", "\uFB01\u05D0", "\uFB01\u05D0",
		"SCRAM-SHA-256$4096:rOVkmgRH/qeZFx10NsBg5Q==$sBOCN2TLzZ9CDJtqjmQ9C/KII5/UnWUIna56b0Ucw5g=:Bk/tj/BGCAcm5+MNV1aGDp9Er5KkvEA8CZUg/r625XM="},
	{"right-to-left ending in a digit: raw", "\u05D0\u00AD1", "\u05D0\u00AD1",
		"SCRAM-SHA-256$4096:khhdJsdwiJLokkf95gy8Sg==$1zI3nD9qzzoKW590uLa1ayGL0ma5N8xDueADYxy3EUM=:L3Ru8vUw97xVJOSkm4FNBNwWKdg7ZcdvfO0siBhLKpY="},
}

func TestNewVerifierMatchesPostgreSQL(t *testing.T) {
	for _, tt := range postgresSecrets {
		t.Run(tt.name, func(t *testing.T) {
			if got := saslprep(tt.password); got != tt.prepared {
				t.Errorf("saslprep(%+q) = %+q, want %+q", tt.password, got, tt.prepared)
			}
			pg, err := ParseVerifier(tt.secret)
			if err != nil {
				t.Fatal(err)
			}
			if got := NewVerifier(tt.password, pg.Salt, pg.Iterations).String(); got != tt.secret {
				t.Errorf("NewVerifier(%+q) = %s, want PostgreSQL's %s", tt.password, got, tt.secret)
			}
		})
	}
}

func TestSASLprepEdges(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"with\x01control", "with\x01control"}, // ASCII is never touched
		{"\xff\xfe", "\xff\xfe"},               // not UTF-8: raw
		{"p\u00E4ss\xff", "p\u00E4ss\xff"},     // partly UTF-8: raw
		{"\u3000x\u3000", " x "},               // ideographic spaces
		{"\uFE0F\u200Dx", "x"},                 // variation selector, joiner
	} {
		if got := saslprep(tt.in); got != tt.want {
			t.Errorf("saslprep(%+q) = %+q, want %+q", tt.in, got, tt.want)
		}
	}
}

func TestSASLprepTables(t *testing.T) {
	tables := map[string][]runeRange{
		"prohibited": prohibitedRanges, "RandALCat": randALCatRanges, "LCat": lCatRanges,
		"non-ASCII space": nonASCIISpaceRanges, "mapped to nothing": mappedToNothingRanges,
	}
	for name, table := range tables {
		for i, r := range table {
			if r.lo > r.hi || (i > 0 && table[i-1].hi >= r.lo) {
				t.Errorf("%s table not sorted at %d: %X-%X", name, i, r.lo, r.hi)
			}
		}
	}
	// Spot checks against RFC 3454's own listings.
	for _, tt := range []struct {
		table []runeRange
		r     rune
		want  bool
	}{
		{prohibitedRanges, 0x0000, true},      // C.2.1
		{prohibitedRanges, 0x0041, false},     // 'A'
		{prohibitedRanges, 0x0221, true},      // A.1, first unassigned
		{prohibitedRanges, 0x06DD, true},      // C.2.2
		{prohibitedRanges, 0xE000, true},      // C.3
		{prohibitedRanges, 0xFDD0, true},      // C.4
		{prohibitedRanges, 0xFFF9, true},      // C.6
		{prohibitedRanges, 0x2FF0, true},      // C.7
		{prohibitedRanges, 0x200E, true},      // C.8
		{prohibitedRanges, 0xE0001, true},     // C.9
		{prohibitedRanges, 0x1F600, true},     // unassigned in 3.2
		{prohibitedRanges, 0x1D400, false},    // mathematical bold A
		{prohibitedRanges, 0x10FFFF, true},    // C.4
		{randALCatRanges, 0x05BE, true},       // first of D.1
		{randALCatRanges, 0xFEFC, true},       // last of D.1
		{randALCatRanges, 0x0041, false},      //
		{lCatRanges, 0x0041, true},            // first of D.2
		{lCatRanges, 0x10FFFD, true},          // last of D.2
		{lCatRanges, 0x05D0, false},           //
		{mappedToNothingRanges, 0x200B, true}, // also C.1.2
	} {
		if got := inRanges(tt.r, tt.table); got != tt.want {
			t.Errorf("inRanges(%X) = %v, want %v", tt.r, got, tt.want)
		}
	}
}

// TestPgxClient runs pgx's own SCRAM client against a Server, through a
// minimal backend on an in-memory connection.
func TestPgxClient(t *testing.T) {
	v := NewVerifier("p\u00E4ssw\u00F6rd", []byte("pgbridge pgx salt"), 4096)
	tests := []struct {
		name, password string
		v              Verifier
		wantErr        error
	}{
		{"right password", "p\u00E4ssw\u00F6rd", v, nil},
		{"right password, decomposed", "pa\u0308sswo\u0308rd", v, nil},
		{"wrong password", "passwort", v, ErrAuthFailed},
		{"unknown user", "p\u00E4ssw\u00F6rd", MockVerifier("alice", []byte(testMockSecret)), ErrAuthFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientErr, serverErr := pgxLogin(t, tt.v, tt.password)
			if serverErr != tt.wantErr {
				t.Fatalf("server error = %v, want %v", serverErr, tt.wantErr)
			}
			if (clientErr == nil) != (tt.wantErr == nil) {
				t.Fatalf("pgx error = %v", clientErr)
			}
		})
	}
}

func pgxLogin(t *testing.T, v Verifier, password string) (clientErr, serverErr error) {
	t.Helper()
	clientConn, serverConn := net.Pipe()
	served := make(chan error, 1)
	go func() {
		defer serverConn.Close()
		served <- fakeBackend(serverConn, NewServer(v))
	}()

	cfg, err := pgconn.ParseConfig("host=pgbridge.invalid port=5432 user=alice dbname=alice sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = password
	cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
	cfg.DialFunc = func(context.Context, string, string) (net.Conn, error) { return clientConn, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, clientErr := pgconn.ConnectConfig(ctx, cfg)
	if clientErr == nil {
		conn.Close(ctx)
	} else {
		clientConn.Close()
	}
	return clientErr, <-served
}

// fakeBackend does a PostgreSQL backend's part of a SCRAM login and returns
// the Server's error, if any.
func fakeBackend(conn net.Conn, srv *Server) error {
	be := pgproto3.NewBackend(conn, conn)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return fmt.Errorf("startup: %w", err)
	}
	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}})
	if err := be.Flush(); err != nil {
		return err
	}
	be.SetAuthType(pgproto3.AuthTypeSASL)
	msg, err := be.Receive()
	if err != nil {
		return err
	}
	initial, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok || initial.AuthMechanism != "SCRAM-SHA-256" {
		return fmt.Errorf("unexpected %#v", msg)
	}
	serverFirst, err := srv.ClientFirst(initial.Data)
	if err != nil {
		return err
	}
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: serverFirst})
	if err := be.Flush(); err != nil {
		return err
	}
	be.SetAuthType(pgproto3.AuthTypeSASLContinue)
	if msg, err = be.Receive(); err != nil {
		return err
	}
	response, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return fmt.Errorf("unexpected %#v", msg)
	}
	serverFinal, authErr := srv.ClientFinal(response.Data)
	if authErr != nil {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"})
	} else {
		be.Send(&pgproto3.AuthenticationSASLFinal{Data: serverFinal})
		be.Send(&pgproto3.AuthenticationOk{})
		be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	}
	if err := be.Flush(); err != nil {
		return err
	}
	if authErr == nil {
		be.Receive() // Terminate, or the end of the connection
	}
	return authErr
}

// BenchmarkVerify measures a whole exchange against a 4096-iteration
// verifier: "server" is what the router pays per login (the iterations are
// the client's work), "with-client" adds the client's side.
func BenchmarkVerify(b *testing.B) {
	v := NewVerifier("pencil", []byte("0123456789abcdef"), 4096)
	b.Run("server", func(b *testing.B) {
		c := &testClient{password: "pencil", nonce: rfcClientNonce, gs2: "n,,"}
		clientFirst := c.first()
		clientFinal, err := c.final([]byte("r=" + rfcClientNonce + rfcServerNonce + ",s=MDEyMzQ1Njc4OWFiY2RlZg==,i=4096"))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			s := NewServer(v)
			s.serverNonce = rfcServerNonce // the nonce clientFinal was made for
			if _, err := s.ClientFirst(clientFirst); err != nil {
				b.Fatal(err)
			}
			if _, err := s.ClientFinal(clientFinal); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("with-client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c := &testClient{password: "pencil", nonce: rfcClientNonce, gs2: "n,,"}
			s := NewServer(v)
			first, err := s.ClientFirst(c.first())
			if err != nil {
				b.Fatal(err)
			}
			clientFinal, err := c.final(first)
			if err != nil {
				b.Fatal(err)
			}
			final, err := s.ClientFinal(clientFinal)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.verify(final); err != nil {
				b.Fatal(err)
			}
		}
	})
}
