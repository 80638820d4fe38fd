package proxy

// ParkedSessions counts idle sessions waiting without a read buffer (on
// Linux without a goroutine too) (for tests).
func (s *Server) ParkedSessions() int { return s.parker.len() }
