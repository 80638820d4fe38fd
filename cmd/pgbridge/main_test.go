package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgbridge/pgbridge/internal/scram"
)

func TestPasswdPrintsAVerifierForThePassword(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"passwd"}, strings.NewReader("s3cret pass\n"), &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	v, err := scram.ParseVerifier(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("output is not a verifier: %v", err)
	}
	if want := scram.NewVerifier("s3cret pass", v.Salt, v.Iterations); want.String() != v.String() {
		t.Fatal("verifier does not match the password read from stdin")
	}
	if strings.Contains(out.String(), "s3cret") {
		t.Fatal("password echoed")
	}
}

func TestPasswdRefusesEmptyInput(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"passwd"}, strings.NewReader(""), &out, &errOut); code == 0 {
		t.Fatal("empty password accepted")
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(`backend: {host: db.internal}
tenants:
  acme:
    database: tenant_acme
    backend_user: acme_user
    backend_password: hunter2
    users: {acme_app: {password: app-secret}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"check-config", good}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "acme") || strings.Contains(out.String(), "hunter2") || strings.Contains(out.String(), "app-secret") {
		t.Fatalf("explanation should name the tenant and hide secrets:\n%s", out.String())
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("backend: {host: db, hots: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"check-config", bad}, nil, &out, &errOut); code != 1 {
		t.Fatalf("bad config: exit %d", code)
	}
	if !strings.Contains(errOut.String(), "backend.hots") {
		t.Fatalf("error should name the key: %s", errOut.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, nil, &out, &errOut); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if code := run(nil, nil, &out, &errOut); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
}

// serve takes its file from --config only; a bare argument is refused
// rather than ignored in favour of ./pgbridge.yaml.
func TestServeRefusesABareArgument(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"serve", "other.yaml"}, nil, &out, &errOut); code != 2 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errOut.String(), `"other.yaml"`) || !strings.Contains(errOut.String(), "--config") {
		t.Errorf("stderr %q", errOut.String())
	}
}
