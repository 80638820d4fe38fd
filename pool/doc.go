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
//   - Fairness. When nothing is idle, callers queue per tenant (FIFO) for up
//     to pool_wait_timeout. Freed budget goes to the waiting tenant holding
//     the fewest connections for its pool_size. A released connection of a
//     tenant above its fair share of a full budget (shares are weighted by
//     pool_size among the tenants that want connections) is closed and its
//     slot given to a waiting tenant below its share, so one busy tenant
//     cannot keep the whole budget.
//   - Backend life. Dials use pgconn as the tenant's role and then hijack
//     the socket, keeping the backend's cancel key and parameter statuses.
//     Transient dial failures are retried with backoff for up to
//     backend.resume_timeout (a cluster resuming or failing over). A
//     maintenance loop closes connections idle past backend.idle_timeout (so
//     the cluster can pause) or older than backend.max_lifetime, and opens
//     connections up to min_pool_size. Broken connections are Discarded by
//     their user and never handed out again.
//
// The flow of one connection:
//
//	Acquire(tenant)
//	  │
//	  ├─ idle conn of tenant? ───────────────────────────► use it (LIFO)
//	  ├─ room in pool_size and budget? ──── reserve slot ─► dial ─► use it
//	  ├─ room in pool_size, budget full,
//	  │  another tenant idle? ─ close its LRU idle, reserve ─► dial ─► use it
//	  └─ otherwise: queue ◄──────────────────────────────┐
//	       │ grant: a conn, or a slot to dial             │
//	       │ pool_wait_timeout / ctx end ─► error         │
//	       ▼                                              │
//	     use it ─► Release(conn)                          │
//	                 ├─ expired / over pool_size / closed ─► close, free slot
//	                 ├─ budget full, other tenant starved ─► close, slot to it
//	                 ├─ own waiter? ───── hand conn over ─┤
//	                 ├─ budget full, other tenant queued ─► close, slot to it
//	                 └─ else ─► idle stack (reaped after idle_timeout)
//	           Discard(conn) ─► close, free slot ─► neediest waiting tenant
//
// Every connection is counted against its tenant and the budget from the
// moment its slot is reserved until it is closed. One mutex guards all
// accounting; sockets are dialed and closed, and grants delivered, only after
// it is released. Stats and Budget give read-only snapshots for metrics and
// the admin console.
package pool
