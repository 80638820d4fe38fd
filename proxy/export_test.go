package proxy

// ParkedSessions counts idle sessions waiting without a read buffer (on
// Linux without a goroutine too) (for tests).
func (s *Server) ParkedSessions() int { return s.parker.len() }

// WithPumpWrites runs f in a pump that has given up its backend (the
// session is between transactions) before it writes the answer.
func WithPumpWrites(f func()) Option { return func(s *Server) { s.pumpWrites = f } }
