// Package pgtest runs a disposable, real PostgreSQL server for integration
// tests and provisions Bridge tenants on it.
//
// Start initdb's a fresh cluster into a directory under os.TempDir() named
// pgbridge-pgtest-*, tunes it for speed rather than durability, and starts it
// on a free 127.0.0.1 port with SCRAM password authentication. Close stops the
// server and deletes that directory. When the tests run as root, every server
// process runs as the "postgres" OS user, because PostgreSQL refuses to run as
// root. A test process killed before Close (a go test timeout, SIGKILL) leaves
// its server running; the next Start stops and removes such orphans, telling
// them by the owner file each cluster's directory holds (PID and start time).
//
// CreateTenant sets up a tenant the way Bridge onboarding does: one database
// (tenant_<name>) and one login role (<name>_user) that alone may connect to it.
//
// Main is meant for TestMain: it gives each test package one cluster and fails
// loudly, with the install command, when PostgreSQL is missing.
package pgtest
