// Package pool keeps the router's backend connections: one pool per tenant,
// all drawing on one budget of backend connections for the whole cluster.
//
// What it owns:
//
//   - Per-tenant pools. Each tenant connects to the cluster as its own role
//     and database, so a connection can only ever serve the tenant that dialed
//     it. A tenant holds at most pool_size connections (idle, in use, or being
//     dialed); idle ones form a stack, so the most recently used is reused
//     first and the least recently used ages out.
//   - The shared budget. backend.max_connections caps the sum over all
//     tenants. A tenant that needs a connection while the budget is full
//     takes it from another tenant's idle connections (closing the least
//     recently used one) rather than waiting.
//   - Reserves. reserved_connections is a guaranteed minimum: the part of a
//     tenant's reserve it does not use is budget held back for it, so other
//     tenants cannot grow into it, and a tenant below its reserve gets a
//     connection at once. Idle eviction and fair-share transfers never take
//     a tenant below its reserve. Reserves are headroom, not open
//     connections: idle_timeout still closes a reserved tenant's idle
//     connections (min_pool_size is what keeps connections open).
//   - Fairness. When nothing is idle, callers queue per tenant (FIFO) for up
//     to pool_wait_timeout. Freed budget goes to waiting tenants below their
//     reserve first, then to the one holding the fewest connections for its
//     pool_size. A released connection of a tenant above its fair share of a
//     full budget (shares are weighted by pool_size among the tenants that
//     want connections, never below a reserve) is closed and its slot given
//     to a waiting tenant below its share; and when the budget is smaller
//     than the number of busy tenants, a waiting tenant holding nothing gets
//     the next slot, so slots rotate and no tenant starves however many
//     clients another one queues.
//   - Backend life. Dials use pgconn as the tenant's role (password, or an
//     RDS IAM token signed per dial) with the backend.tls policy (libpq's
//     sslmode semantics), resolving the host name again each time, and then
//     hijack the socket, keeping the backend's cancel key and parameter
//     statuses. Transient dial failures are retried with backoff for up to
//     backend.resume_timeout (a cluster resuming or failing over). A
//     maintenance loop closes connections idle past backend.idle_timeout (so
//     the cluster can pause) or older than backend.max_lifetime, and opens
//     connections up to min_pool_size.
//   - Health. Broken connections are Discarded by their user and never handed
//     out again. Before an idle connection is handed out, its socket is
//     peeked without blocking: a server that closed it (restart,
//     pg_terminate_backend) has left an error or end of stream there. After
//     Suspect (the proxy calls it when a backend answered 25006 or
//     57P01-57P03 or broke), every connection that existed is validated with
//     one round trip (Conn.readOnly) before its next use and dropped if
//     that fails or says the server is read-only.
//   - Live configuration. Update adds and removes tenants, applies changed
//     limits (shrinking as connections come back, admitting waiters at
//     once) and retires connections dialed with settings that changed.
//
// The flow of one connection:
//
//	Acquire(tenant)
//	  │
//	  ├─ idle conn of tenant? ─ peek, validate if suspect ─► use it (LIFO)
//	  ├─ room in pool_size and budget
//	  │  (others' unused reserves excluded)? ─ reserve slot ─► dial ─► use it
//	  ├─ room in pool_size, budget full, another tenant
//	  │  idle above its reserve? ─ close its LRU idle, reserve ─► dial ─► use it
//	  └─ otherwise: queue ◄──────────────────────────────┐
//	       │ grant: a conn, or a slot to dial             │
//	       │ pool_wait_timeout / ctx end ─► error         │
//	       │ tenant removed ─► ErrTenantRemoved           │
//	       ▼                                              │
//	     use it ─► Release(conn)                          │
//	                 ├─ expired / stale settings / over pool_size
//	                 │  or budget / closed / removed ─► close, free slot
//	                 ├─ tenant above its reserve, and another tenant waits
//	                 │  below its reserve, or tenant has no waiter, or it is
//	                 │  above its fair share, or another holds nothing
//	                 │                         ─► close, slot to that tenant
//	                 ├─ own waiter? ───── hand conn over ─┤
//	                 └─ else ─► idle stack (reaped after idle_timeout)
//	           Discard(conn) ─► close, free slot ─► neediest waiting tenant
//
// Every connection is counted against its tenant and the budget from the
// moment its slot is reserved until it is closed. One mutex guards all
// accounting; sockets are dialed, peeked, validated and closed, and grants
// delivered, only after it is released. Stats and Budget give read-only
// snapshots for metrics and the admin console; BackendStats counts and times
// dials.
package pool
