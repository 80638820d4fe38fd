package scram

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// ErrAuthFailed means the client's proof was wrong: a wrong password, or an
// unknown user answered with MockVerifier. Callers report it as SQLSTATE 28P01.
var ErrAuthFailed = errors.New("scram: password authentication failed")

// serverNonceLen is how many random bytes the server adds to the client's
// nonce; like PostgreSQL, 18 bytes, which is 24 characters of base64.
const serverNonceLen = 18

// step is where an exchange stands.
type step int

const (
	awaitClientFirst step = iota
	awaitClientFinal
	finished // succeeded, failed or broken off: no further message is accepted
)

// Server is one server-side exchange. Not safe for concurrent use.
//
// Call ClientFirst, then ClientFinal. Once either returns an error the
// exchange is over and further calls return errors too.
type Server struct {
	v           Verifier
	serverNonce string
	step        step

	// Kept from the first round for the second.
	gs2Header       string // "n,," or "y,,"
	clientFirstBare string
	serverFirst     string
	nonce           string // client nonce followed by server nonce
}

// NewServer starts an exchange against v, with a server nonce from
// crypto/rand. v should come from ParseVerifier, NewVerifier,
// GenerateVerifier or MockVerifier.
func NewServer(v Verifier) *Server {
	b := make([]byte, serverNonceLen)
	rand.Read(b) // never fails: crypto/rand crashes the program instead
	return newServerWithNonce(v, base64.StdEncoding.EncodeToString(b))
}

// newServerWithNonce starts an exchange with a chosen server nonce, which
// must be printable ASCII without ','. Only tests choose one.
func newServerWithNonce(v Verifier, serverNonce string) *Server {
	return &Server{v: v, serverNonce: serverNonce}
}

// ClientFirst takes the client-first-message (the data of PostgreSQL's
// SASLInitialResponse) and returns the server-first-message.
//
// Accepted: gs2 header "n,," or "y,," (the client can do channel binding but
// thinks we cannot: true, we never advertise SCRAM-SHA-256-PLUS), any user
// name (PostgreSQL ignores it, the user comes from the startup packet), and a
// client nonce of printable ASCII other than ','. Refused: channel binding
// ("p="), an authorization identity ("a="), the mandatory-extension
// attribute ("m=") and any extension after the nonce.
func (s *Server) ClientFirst(msg []byte) ([]byte, error) {
	inOrder := s.step == awaitClientFirst
	s.step = finished // until the message proves good: any error ends the exchange
	if !inOrder {
		return nil, errors.New("scram: client-first-message out of order")
	}
	if err := checkMessage(msg); err != nil {
		return nil, err
	}
	if s.v.Iterations < 1 || len(s.v.Salt) == 0 {
		return nil, errors.New("scram: server has no usable verifier")
	}

	// gs2-cbind-flag "," [authzid] "," username "," nonce: user names and
	// nonces cannot hold a raw ',', so splitting on ',' finds the fields.
	fields := strings.Split(string(msg), ",")
	switch flag := fields[0]; {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		return nil, errors.New("scram: client requires channel binding, which is not offered")
	default:
		return nil, errors.New("scram: malformed client-first-message: bad channel binding flag")
	}
	if len(fields) < 4 {
		return nil, errors.New("scram: malformed client-first-message: too few attributes")
	}
	if authzid := fields[1]; authzid != "" {
		if strings.HasPrefix(authzid, "a=") {
			return nil, errors.New("scram: client sent an authorization identity, which is not supported")
		}
		return nil, errors.New("scram: malformed client-first-message: bad gs2 header")
	}
	if strings.HasPrefix(fields[2], "m=") {
		return nil, errors.New("scram: client requires an unsupported SCRAM extension")
	}
	if !strings.HasPrefix(fields[2], "n=") {
		return nil, errors.New("scram: malformed client-first-message: user name expected")
	}
	clientNonce, ok := strings.CutPrefix(fields[3], "r=")
	if !ok || !isPrintable(clientNonce) {
		return nil, errors.New("scram: malformed client-first-message: nonce expected, of printable ASCII other than ','")
	}
	if len(fields) > 4 {
		return nil, errors.New("scram: client-first-message has extensions, which are not supported")
	}

	s.gs2Header = fields[0] + ",,"
	s.clientFirstBare = string(msg[len(s.gs2Header):])
	s.nonce = clientNonce + s.serverNonce
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.v.Salt) +
		",i=" + strconv.Itoa(s.v.Iterations)
	s.step = awaitClientFinal
	return []byte(s.serverFirst), nil
}

// ClientFinal takes the client-final-message (the data of PostgreSQL's
// SASLResponse) and returns the server-final-message ("v=...") if the proof
// is right. A wrong proof returns ErrAuthFailed; malformed input, a channel
// binding field that does not repeat the gs2 header, or a nonce other than
// the one agreed return other errors.
func (s *Server) ClientFinal(msg []byte) ([]byte, error) {
	inOrder := s.step == awaitClientFinal
	s.step = finished // whatever happens, this is the last message
	if !inOrder {
		return nil, errors.New("scram: client-final-message out of order")
	}
	if err := checkMessage(msg); err != nil {
		return nil, err
	}

	// channel-binding "," nonce "," proof; none of them can hold a ','.
	fields := strings.Split(string(msg), ",")
	binding, ok := strings.CutPrefix(fields[0], "c=")
	if !ok {
		return nil, errors.New("scram: malformed client-final-message: channel binding expected")
	}
	if binding != base64.StdEncoding.EncodeToString([]byte(s.gs2Header)) {
		return nil, errors.New("scram: channel binding in client-final-message does not match the gs2 header")
	}
	if len(fields) < 2 {
		return nil, errors.New("scram: malformed client-final-message: nonce expected")
	}
	nonce, ok := strings.CutPrefix(fields[1], "r=")
	if !ok {
		return nil, errors.New("scram: malformed client-final-message: nonce expected")
	}
	if nonce != s.nonce {
		return nil, errors.New("scram: nonce in client-final-message does not match")
	}
	last := fields[len(fields)-1]
	proofText, ok := strings.CutPrefix(last, "p=")
	if len(fields) < 3 || !ok {
		return nil, errors.New("scram: malformed client-final-message: proof expected as the last attribute")
	}
	if len(fields) > 3 {
		return nil, errors.New("scram: client-final-message has extensions, which are not supported")
	}
	var proof [32]byte
	if !decodeKey(proof[:], proofText) {
		return nil, errors.New("scram: malformed client-final-message: proof is not base64 of 32 bytes")
	}

	withoutProof := msg[:len(msg)-len(last)-1]
	authMessage := make([]byte, 0, len(s.clientFirstBare)+len(s.serverFirst)+len(withoutProof)+2)
	authMessage = append(authMessage, s.clientFirstBare...)
	authMessage = append(authMessage, ',')
	authMessage = append(authMessage, s.serverFirst...)
	authMessage = append(authMessage, ',')
	authMessage = append(authMessage, withoutProof...)

	// ClientKey = proof XOR HMAC(StoredKey, AuthMessage); it is right if
	// its hash is StoredKey.
	var clientKey [32]byte
	clientSignature := hmacSHA256(s.v.StoredKey[:], authMessage)
	subtle.XORBytes(clientKey[:], proof[:], clientSignature[:])
	if storedKey := sha256.Sum256(clientKey[:]); subtle.ConstantTimeCompare(storedKey[:], s.v.StoredKey[:]) != 1 {
		return nil, ErrAuthFailed
	}

	serverSignature := hmacSHA256(s.v.ServerKey[:], authMessage)
	return base64.StdEncoding.AppendEncode([]byte("v="), serverSignature[:]), nil
}

// checkMessage rejects what no valid message holds: nothing at all, or a NUL
// byte (PostgreSQL reads these messages as C strings and refuses NULs too).
func checkMessage(msg []byte) error {
	if len(msg) == 0 {
		return errors.New("scram: empty message")
	}
	if bytes.IndexByte(msg, 0) >= 0 {
		return errors.New("scram: message contains a NUL byte")
	}
	return nil
}

// isPrintable reports whether s is a valid nonce: RFC 5802's "printable",
// one or more of the characters 0x21 to 0x7E except ','.
func isPrintable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7E || c == ',' {
			return false
		}
	}
	return true
}
