// Command gorelay is the load tests' floor for a proxy written in Go: it
// relays each client connection to a backend connection of its own, byte
// for byte, with two goroutines, io.Copy and the socket calls pgbridge
// makes (internal/sockio). It parses nothing, pools nothing and
// authenticates nothing (the client logs in to PostgreSQL through it).
//
// Its cost per query is what the Go runtime and the kernel's loopback TCP
// charge a Go proxy built like pgbridge for two extra hops; whatever
// pgbridge costs above it is pgbridge's own.
//
// Usage: gorelay -listen 127.0.0.1:7000 -backend 127.0.0.1:5432
package main
