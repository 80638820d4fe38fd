package scram

import (
	"errors"
	"strings"
	"testing"
)

// The router verifies a SCRAM login with the stored verifier only: two
// HMACs, a hash and a comparison. The slow part of SCRAM, PBKDF2 over the
// password, runs on the client and when a verifier is made (NewVerifier).
// BenchmarkVerify in scram_test.go measures a successful exchange; these
// cover the other paths a login can take and the verifier's life cycle.

// BenchmarkServerExchangeWrongPassword is a login with a wrong proof (a
// wrong password, or an unknown user's mock verifier): the proof is checked
// in full; only the server signature of a good login is left out.
func BenchmarkServerExchangeWrongPassword(b *testing.B) {
	v := rfcVerifier(b)
	first := []byte(rfcClientFirst)
	// Flip one character of the proof, keeping it valid base64.
	i := strings.Index(rfcClientFinal, ",p=") + 3
	bad := []byte(rfcClientFinal)
	bad[i] ^= 1
	b.ReportAllocs()
	for b.Loop() {
		s := newServerWithNonce(v, rfcServerNonce)
		if _, err := s.ClientFirst(first); err != nil {
			b.Fatal(err)
		}
		if _, err := s.ClientFinal(bad); !errors.Is(err, ErrAuthFailed) {
			b.Fatalf("wrong proof: %v", err)
		}
	}
}

// BenchmarkNewServer is starting an exchange: 18 random bytes for the
// server nonce.
func BenchmarkNewServer(b *testing.B) {
	v := rfcVerifier(b)
	b.ReportAllocs()
	for b.Loop() {
		NewServer(v)
	}
}

// BenchmarkMockVerifier is the extra work for an unknown user name, which
// runs the exchange against a verifier derived from the name.
func BenchmarkMockVerifier(b *testing.B) {
	secret := []byte(testMockSecret)
	b.ReportAllocs()
	for b.Loop() {
		MockVerifier("nobody_app", secret)
	}
}

// BenchmarkParseVerifier is reading one verifier from the configuration.
func BenchmarkParseVerifier(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseVerifier(rfcVerifierText); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewVerifier is PBKDF2 with 4096 iterations: what `pgbridge
// passwd` and a {password: ...} login in the configuration cost once, and
// what every client pays on every login.
func BenchmarkNewVerifier(b *testing.B) {
	salt := []byte("0123456789abcdef")
	b.ReportAllocs()
	for b.Loop() {
		NewVerifier("pencil", salt, 4096)
	}
}
