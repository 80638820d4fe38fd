package scram

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzServerExchange feeds arbitrary client messages to a Server. It must
// never panic, must only succeed on well-formed messages and, against the RFC
// 7677 verifier, must only accept the one right proof.
func FuzzServerExchange(f *testing.F) {
	f.Add([]byte(rfcClientFirst), []byte(rfcClientFinal))
	f.Add([]byte("y,,n=,r=abc"), []byte("c=eSws,r=abc"+rfcServerNonce+",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="))
	f.Add([]byte("p=tls-server-end-point,,n=,r=abc"), []byte("c=,r=,p="))
	f.Add([]byte("n,a=x,m=y,n=,r=a,b"), []byte(",,,"))
	f.Add([]byte{}, []byte{})
	v := rfcVerifier(f)
	f.Fuzz(func(t *testing.T, clientFirst, clientFinal []byte) {
		s := newServerWithNonce(v, rfcServerNonce)
		first, err := s.ClientFirst(clientFirst)
		if err != nil {
			if first != nil {
				t.Fatal("ClientFirst returned a message with its error")
			}
			return
		}
		if !bytes.HasPrefix(clientFirst, []byte("n,,n=")) && !bytes.HasPrefix(clientFirst, []byte("y,,n=")) {
			t.Fatalf("ClientFirst accepted %q", clientFirst)
		}
		if !strings.HasPrefix(string(first), "r=") || !strings.Contains(string(first), rfcServerNonce+",s=") {
			t.Fatalf("server-first-message %q", first)
		}
		final, err := s.ClientFinal(clientFinal)
		if err != nil {
			if final != nil {
				t.Fatal("ClientFinal returned a message with its error")
			}
			return
		}
		// Only the RFC's own exchange can carry a right proof.
		if string(clientFirst) != rfcClientFirst || string(clientFinal) != rfcClientFinal || string(final) != rfcServerFinal {
			t.Fatalf("exchange %q / %q succeeded with %q", clientFirst, clientFinal, final)
		}
	})
}

// FuzzParseVerifier checks that ParseVerifier never panics, and that what it
// accepts is exactly what String gives back.
func FuzzParseVerifier(f *testing.F) {
	f.Add(rfcVerifierText)
	f.Add("SCRAM-SHA-256$1:AA==$" + rfcVerifierKeys)
	f.Add("SCRAM-SHA-256$16777216:W22ZaJ0SNY7soEsUEjb6gQ==$::")
	f.Add("md5a3556571e93b0d20722ba62be61e8c2d")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVerifier(s)
		if err != nil {
			if !v.IsZero() {
				t.Fatal("ParseVerifier returned a verifier with its error")
			}
			return
		}
		if v.String() != s {
			t.Fatalf("ParseVerifier(%q).String() = %q", s, v.String())
		}
		if v.Iterations < 1 || v.Iterations > maxIterations || len(v.Salt) == 0 {
			t.Fatalf("ParseVerifier accepted %q", s)
		}
	})
}
