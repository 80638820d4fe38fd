// Package bench holds pgbridge's load tests (see README.md here).
//
// bench/cmd/compare is the harness behind `make bench`: it starts a
// throwaway PostgreSQL with Bridge tenants, the pgbridge binary and
// PgBouncer on loopback, runs pgbench and bench/cmd/loadgen workloads
// against all three with the targets interleaved so that ratios come from
// one run on one machine, and writes a Markdown and JSON report with SVG
// charts to bench/results. bench/cmd/gorelay, an optional target, is a
// byte relay in Go: the floor of what a proxy built like pgbridge costs.
package bench
