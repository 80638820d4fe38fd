package proxy

// ParkedSessions counts sessions waiting for their client without a read
// buffer (for tests).
func (s *Server) ParkedSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for ss := range s.sessions {
		ss.mu.Lock()
		if ss.parked {
			n++
		}
		ss.mu.Unlock()
	}
	return n
}
