// Package proxy is the client side of pgbridge: it accepts connections,
// negotiates TLS, reads the StartupMessage, authenticates the login with
// SCRAM-SHA-256, admits it under its tenant's limits, and relays the
// session to a backend connection taken from the tenant's pool.
//
//	client ─▶ accept ─▶ startup/TLS ─▶ SCRAM ─▶ admit ─▶ welcome (params, key, Z)
//	                                                        │
//	             ┌──────────────── session ─────────────────┘
//	             │ client loop: read frames ─▶ acquire backend if none ─▶ write batch
//	             │ pump:        read backend frames ─▶ write batch to client
//	             │              ReadyForQuery 'I' at a request boundary
//	             │              (transaction mode) ─▶ release to the pool
//	             └ end: reuse the backend only if provably idle (session mode:
//	               after DISCARD ALL), else close it
//
// In transaction mode, statements are tracked and renamed per backend and
// session-level state pins a client to its backend (stmt.go, with the lexer
// of internal/sqllex). Only frame headers are parsed on the hot path; runs of complete frames go
// out with one write. Ownership of an attached backend is decided under the
// session mutex: whichever goroutine detaches it releases or discards it.
// The router issues its own cancel keys; a CancelRequest reaches the backend
// serving that client at that moment and no other. Errors the router
// originates come from one catalogue (errors.go) with their SQLSTATE.
package proxy
