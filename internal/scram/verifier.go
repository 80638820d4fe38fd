package scram

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

const (
	// verifierPrefix starts every SCRAM-SHA-256 secret PostgreSQL stores.
	verifierPrefix = "SCRAM-SHA-256$"

	// defaultIterations and saltLen are what PostgreSQL uses when it builds
	// a secret with its default settings.
	defaultIterations = 4096
	saltLen           = 16

	// maxIterations bounds the iteration count a verifier may carry. The
	// server never runs the iterations itself, but every client does on every
	// login, and so does NewVerifier: 1<<24 (about 16.7 million) is far above
	// any sane setting (PostgreSQL's default is 4096, OWASP suggests 600000)
	// while still catching corrupt or hostile values.
	maxIterations = 1 << 24
)

// Verifier is a stored SCRAM-SHA-256 secret, the same form as PostgreSQL's
// pg_authid.rolpassword:
//
//	SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>
//
// Whoever holds a verifier can pose as the server to clients and guess the
// password offline, so treat it (and its String form) as a secret: do not
// log it.
type Verifier struct {
	Iterations int
	Salt       []byte
	StoredKey  [32]byte
	ServerKey  [32]byte
}

// ParseVerifier parses the PostgreSQL text form of a SCRAM-SHA-256 secret.
// It is strict: the iteration count must be a plain decimal in
// [1, 1<<24], the salt non-empty canonical base64 (padded, no line breaks),
// and each key canonical base64 of exactly 32 bytes. Errors describe what is
// wrong without quoting the input.
func ParseVerifier(s string) (Verifier, error) {
	rest, ok := strings.CutPrefix(s, verifierPrefix)
	if !ok {
		return Verifier{}, errors.New("scram: verifier does not start with " + verifierPrefix)
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return Verifier{}, errors.New("scram: verifier has no '$' between its parameters and its keys")
	}
	iterText, saltText, ok := strings.Cut(params, ":")
	if !ok {
		return Verifier{}, errors.New("scram: verifier has no ':' between iteration count and salt")
	}
	storedText, serverText, ok := strings.Cut(keys, ":")
	if !ok {
		return Verifier{}, errors.New("scram: verifier has no ':' between StoredKey and ServerKey")
	}

	var v Verifier
	var err error
	if v.Iterations, err = parseIterations(iterText); err != nil {
		return Verifier{}, err
	}
	if v.Salt, ok = decodeBase64(saltText); !ok || len(v.Salt) == 0 {
		return Verifier{}, errors.New("scram: verifier salt is not non-empty base64")
	}
	if !decodeKey(v.StoredKey[:], storedText) {
		return Verifier{}, errors.New("scram: verifier StoredKey is not base64 of 32 bytes")
	}
	if !decodeKey(v.ServerKey[:], serverText) {
		return Verifier{}, errors.New("scram: verifier ServerKey is not base64 of 32 bytes")
	}
	return v, nil
}

var errBadIterations = errors.New("scram: verifier iteration count must be a decimal number from 1 to " + strconv.Itoa(maxIterations))

// parseIterations accepts only plain decimal digits without a sign or
// leading zeros, so each count has exactly one spelling.
func parseIterations(s string) (int, error) {
	if s == "" || len(s) > len(strconv.Itoa(maxIterations)) || s[0] == '0' {
		return 0, errBadIterations
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadIterations
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > maxIterations {
		return 0, errBadIterations
	}
	return n, nil
}

// decodeBase64 decodes padded standard base64 and accepts only the
// canonical encoding: the decoder would otherwise skip line breaks.
func decodeBase64(s string) ([]byte, bool) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || base64.StdEncoding.EncodedLen(len(b)) != len(s) {
		return nil, false
	}
	return b, true
}

// decodeKey decodes s into dst, which it must fill exactly.
func decodeKey(dst []byte, s string) bool {
	b, ok := decodeBase64(s)
	if !ok || len(b) != len(dst) {
		return false
	}
	copy(dst, b)
	return true
}

// String returns the PostgreSQL text form of v; ParseVerifier reads it back.
// The result is a secret (see Verifier).
func (v Verifier) String() string {
	enc := base64.StdEncoding
	return verifierPrefix + strconv.Itoa(v.Iterations) + ":" + enc.EncodeToString(v.Salt) +
		"$" + enc.EncodeToString(v.StoredKey[:]) + ":" + enc.EncodeToString(v.ServerKey[:])
}

// IsZero reports whether v is the zero Verifier, i.e. holds no secret.
func (v Verifier) IsZero() bool {
	return v.Iterations == 0 && len(v.Salt) == 0 && v.StoredKey == [32]byte{} && v.ServerKey == [32]byte{}
}

// NewVerifier derives the verifier for password with the given salt and
// iteration count; the same inputs always give the same verifier. The
// password is first prepared as PostgreSQL prepares it (see saslprep), so the
// result matches what PostgreSQL stores for the same password, salt and
// count, and what libpq computes on the client side.
//
// NewVerifier panics if salt is empty or iterations is outside [1, 1<<24]:
// such a verifier could not be parsed back, and both are programming errors.
func NewVerifier(password string, salt []byte, iterations int) Verifier {
	if len(salt) == 0 || iterations < 1 || iterations > maxIterations {
		panic("scram: NewVerifier needs a non-empty salt and 1 to 1<<24 iterations")
	}
	salted := saltedPassword(saslprep(password), salt, iterations)
	clientKey := hmacSHA256(salted[:], []byte("Client Key"))
	return Verifier{
		Iterations: iterations,
		Salt:       append([]byte(nil), salt...),
		StoredKey:  sha256.Sum256(clientKey[:]),
		ServerKey:  hmacSHA256(salted[:], []byte("Server Key")),
	}
}

// GenerateVerifier derives a verifier for password with a fresh random
// 16-byte salt and 4096 iterations, as PostgreSQL does by default.
func GenerateVerifier(password string) (Verifier, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return Verifier{}, err
	}
	return NewVerifier(password, salt, defaultIterations), nil
}

// MockVerifier returns a fake verifier for a user name that does not exist.
// Salt and keys are HMAC-SHA-256 values keyed by secret over the user name,
// so the same name always gets the same salt (as a real user would), the
// iteration count is the default 4096, and no password matches the keys: the
// exchange runs to the end and fails at the proof with ErrAuthFailed, exactly
// like a wrong password.
//
// secret must be random, at least 32 bytes, kept private and stable for the
// life of the deployment (or at least of the process): anyone who knows it can
// tell mock salts from real ones, and a salt that changes between attempts
// gives the unknown user away.
func MockVerifier(user string, secret []byte) Verifier {
	derive := func(label string) [32]byte {
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(label))
		mac.Write([]byte{0}) // labels contain no NUL, so label and user cannot run together
		mac.Write([]byte(user))
		var out [32]byte
		mac.Sum(out[:0])
		return out
	}
	salt := derive("pgbridge scram mock salt")
	return Verifier{
		Iterations: defaultIterations,
		Salt:       salt[:saltLen],
		StoredKey:  derive("pgbridge scram mock StoredKey"),
		ServerKey:  derive("pgbridge scram mock ServerKey"),
	}
}

// saltedPassword is RFC 5802's Hi(password, salt, i): PBKDF2 with
// HMAC-SHA-256 producing a single 32-byte block.
func saltedPassword(password string, salt []byte, iterations int) [32]byte {
	mac := hmac.New(sha256.New, []byte(password))
	mac.Write(salt)
	mac.Write([]byte{0, 0, 0, 1}) // INT(1): the first and only block
	var u, sum [32]byte
	mac.Sum(u[:0])
	sum = u
	for range iterations - 1 {
		mac.Reset()
		mac.Write(u[:])
		mac.Sum(u[:0])
		for j := range sum {
			sum[j] ^= u[j]
		}
	}
	return sum
}

func hmacSHA256(key, msg []byte) [32]byte {
	mac := hmac.New(sha256.New, key)
	mac.Write(msg)
	var out [32]byte
	mac.Sum(out[:0])
	return out
}
