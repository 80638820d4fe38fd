package proxy

// ParkedSessions counts idle sessions waiting without a read buffer (on
// Linux without a goroutine too) (for tests).
func (s *Server) ParkedSessions() int { return s.parker.len() }

// HookPoint names a place where a test may stall the router.
type HookPoint = hookPoint

const (
	HookPumpRelease = hookPumpRelease // a pump gave its backend back, before it writes the answer
	HookSyncRelease = hookSyncRelease // the client loop relaying an answer itself (relaySync), the same
	HookPumpOut     = hookPumpOut     // a pump, before it writes an answer that keeps its backend
	HookCancelSend  = hookCancelSend  // a router cancel (max_statement_timeout) holding the backend, before it sends
	HookGuardEnd    = hookGuardEnd    // a guardrail decided to end a session, before it does
	HookAcquired    = hookAcquired    // attach got a backend, before it readies it (applyParams)
)

// WithHook runs f at each hook point the router passes.
func WithHook(f func(HookPoint)) Option { return func(s *Server) { s.testHook = f } }
