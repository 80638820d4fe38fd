// Command gorelay is the load tests' floor for a proxy written in Go: it
// relays each client connection to a backend connection of its own, byte
// for byte. It parses nothing, pools nothing and authenticates nothing
// (the client logs in to PostgreSQL through it). It has two loops:
//
//   - goroutines (the default): two goroutines per client, io.Copy and the
//     socket calls pgbridge makes (internal/sockio). Its cost per query is
//     what the Go runtime and the kernel's loopback TCP charge a proxy
//     built like pgbridge for two extra hops; whatever pgbridge costs
//     above it is pgbridge's own.
//   - epoll (Linux): one thread waits in epoll_wait on every socket,
//     level-triggered, and reads each ready socket once, as PgBouncer does.
//     What the goroutine loop costs above it is what the goroutine per
//     connection model costs.
//
// Usage: gorelay -listen 127.0.0.1:7000 -backend 127.0.0.1:5432 [-loop epoll]
package main
