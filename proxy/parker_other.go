//go:build !linux

package proxy

// parker needs epoll; elsewhere an idle session waits on its own
// goroutine (without its read buffer, see session.park).
type parker struct{}

func newParker(func(*session)) *parker { return &parker{} }

func (p *parker) park(*session) bool { return false }
func (p *parker) wake(*session)      {}
func (p *parker) close()             {}
func (p *parker) len() int           { return 0 }
