// Command pgbridge-demo is what `make run` starts: a throwaway local
// PostgreSQL with three Bridge tenants (acme, globex, initech), a generated
// pgbridge config, and pgbridge in the foreground. Ctrl-C stops pgbridge,
// stops PostgreSQL and removes its files.
package main
