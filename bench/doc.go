// Package bench holds pgbridge's load tests. The programs under bench/cmd
// start their own throwaway PostgreSQL, pgbridge and PgBouncer on loopback
// and measure them side by side with pgbench, interleaving the targets so
// that ratios come from one run on one machine.
package bench
