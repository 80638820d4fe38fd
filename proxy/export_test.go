package proxy

// ParkedSessions counts idle sessions waiting without a read buffer (on
// Linux without a goroutine too) (for tests).
func (s *Server) ParkedSessions() int { return s.parker.len() }

// WithPumpWrites runs f in a pump that has given up its backend (the
// session is between transactions) before it writes the answer.
func WithPumpWrites(f func()) Option { return func(s *Server) { s.pumpWrites = f } }

// WithSyncWrites runs f in the client loop relaying an answer itself
// (relaySync) after it gave the backend back, before it writes the answer.
func WithSyncWrites(f func()) Option { return func(s *Server) { s.syncWrites = f } }

// WithPumpOut runs f in a pump before it writes an answer that does not
// give its backend back.
func WithPumpOut(f func()) Option { return func(s *Server) { s.pumpOut = f } }

// WithCancelSend runs f in a router cancel (max_statement_timeout) after
// it took the backend's cancel hold, before it sends the CancelRequest.
func WithCancelSend(f func()) Option { return func(s *Server) { s.cancelSend = f } }
