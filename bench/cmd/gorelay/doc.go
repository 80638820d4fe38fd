// Command gorelay is the load tests' floor for a proxy written in Go: it
// relays each client connection to a backend connection of its own, byte
// for byte, with two goroutines and io.Copy. It parses nothing, pools
// nothing and authenticates nothing (the client logs in to PostgreSQL
// through it).
//
// Its cost per query is what the Go runtime and the kernel's loopback TCP
// charge any Go proxy for two extra hops; whatever pgbridge costs above
// it is pgbridge's own. A hand-written epoll loop with raw syscalls in
// one locked thread measured the same on the 2-core test machine, so
// goroutines are not what separates Go from PgBouncer there.
//
// Usage: gorelay -listen 127.0.0.1:7000 -backend 127.0.0.1:5432
package main
