//go:build !linux

package proxy

import "sync/atomic"

// parker needs epoll; elsewhere an idle session waits on its own
// goroutine (without its read buffer, see session.park).
type parker struct {
	onGo atomic.Int32 // parked sessions waiting on their goroutines
}

func newParker(func(*session)) *parker { return &parker{} }

func (p *parker) park(*session) bool { return false }
func (p *parker) wake(*session)      {}
func (p *parker) close()             {}
func (p *parker) len() int           { return int(p.onGo.Load()) }
