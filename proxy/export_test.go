package proxy

// ParkedSessions counts sessions the parker holds: idle, with neither a
// read buffer nor a goroutine (for tests).
func (s *Server) ParkedSessions() int { return s.parker.len() }
