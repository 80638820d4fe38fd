package routing

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"

	"github.com/pgbridge/pgbridge/internal/scram"
)

// A login configured with a password gets a verifier derived at load time
// with a random salt. Derived afresh at every reload, its salt would change
// while an unknown name's mock salt does not: a client could tell which
// names exist by asking for the first half of an exchange before and after
// a reload. So the process keeps what it derived, by login and password
// (an HMAC under a key of its own, never the password itself), and a
// reload finds the same salt again.
var derived = struct {
	sync.Mutex
	key [32]byte
	m   map[[32]byte]scram.Verifier
}{m: map[[32]byte]scram.Verifier{}}

// derivedCap bounds the cache: past it, it starts again (salts of logins
// loaded after that change once).
const derivedCap = 10000

func init() {
	if _, err := rand.Read(derived.key[:]); err != nil {
		panic(err)
	}
}

// passwordVerifier returns the verifier for login id (its key path) with
// password pw, the same one every time this process loads them.
func passwordVerifier(id, pw string) (scram.Verifier, error) {
	mac := hmac.New(sha256.New, derived.key[:])
	mac.Write([]byte(id))
	mac.Write([]byte{0})
	mac.Write([]byte(pw))
	var k [32]byte
	copy(k[:], mac.Sum(nil))
	derived.Lock()
	defer derived.Unlock()
	if v, ok := derived.m[k]; ok {
		return v, nil
	}
	v, err := scram.GenerateVerifier(pw)
	if err != nil {
		return scram.Verifier{}, err
	}
	if len(derived.m) >= derivedCap {
		clear(derived.m)
	}
	derived.m[k] = v
	return v, nil
}
