package proxy

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// parker holds idle sessions with no goroutine at all. A parked session's
// client socket sits in an epoll set of the parker's own; the epoll file is
// itself watched by Go's network poller, so the parker costs no thread.
// When the client speaks (or hangs up), or the router ends the session, the
// parker starts a fresh goroutine that resumes the client loop. Ten
// thousand idle clients then hold neither read buffers nor goroutine
// stacks (the stack is the larger part: 8 KiB once a session has logged in).
type parker struct {
	mu      sync.Mutex
	started bool
	broken  bool     // epoll could not be set up: sessions wait on their goroutines
	ep      *os.File // the epoll set, watched by Go's poller
	epfd    int
	next    int32
	parked  map[int32]*session
	done    chan struct{} // closed when the poll loop has returned
	resume  func(*session)
	onGo    atomic.Int32 // parked sessions waiting on their goroutines (see session.park)
}

func newParker(resume func(*session)) *parker {
	return &parker{parked: make(map[int32]*session), resume: resume}
}

// park hands ss to the parker. It reports false when the session must wait
// on its own goroutine instead (no epoll, a connection that is not a
// socket or already closed, or a session the router is ending). After true
// the caller must not touch ss again: it may already be running elsewhere.
func (p *parker) park(ss *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ss.noPark || !p.start() {
		return false
	}
	p.next++
	for p.next <= 0 || p.parked[p.next] != nil {
		p.next++ // wrapped: skip 0, negatives and tokens in use
	}
	tok := p.next
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: tok}
	var added bool
	if err := control(ss.nc, func(fd int) {
		added = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev) == nil
	}); err != nil || !added {
		return false
	}
	ss.parkTok = tok
	p.parked[tok] = ss
	return true
}

// wake resumes ss if it is parked, and in any case keeps it from parking
// again: it is called before the router closes a client connection, so
// that no session is ever left registered for a socket that is gone.
func (p *parker) wake(ss *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ss.noPark = true
	p.unparkLocked(ss.parkTok)
}

func (p *parker) unparkLocked(tok int32) {
	ss := p.parked[tok]
	if ss == nil {
		return
	}
	delete(p.parked, tok)
	ss.parkTok = 0
	// The socket stays open while Control runs, so the descriptor cannot
	// be another socket's by now.
	_ = control(ss.nc, func(fd int) { _ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, nil) })
	go p.resume(ss)
}

// start sets up the epoll set and its poll loop on first use.
func (p *parker) start() bool {
	if p.started || p.broken {
		return p.started
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		p.broken = true
		return false
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		p.broken = true
		return false
	}
	ep := os.NewFile(uintptr(epfd), "pgbridge-parker")
	rc, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		p.broken = true
		return false
	}
	p.ep, p.epfd, p.started, p.done = ep, epfd, true, make(chan struct{})
	go p.loop(rc)
	return true
}

// loop resumes the sessions whose sockets became readable. It waits on
// Go's poller for the epoll set to have events, takes them without
// blocking, and ends when the parker is closed.
func (p *parker) loop(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	_ = rc.Read(func(epfd uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(epfd), events, 0)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil {
				return true
			}
			p.mu.Lock()
			for _, ev := range events[:n] {
				p.unparkLocked(ev.Fd)
			}
			p.mu.Unlock()
			if n < len(events) {
				return false // drained: wait for the next readiness
			}
		}
	})
}

// len counts the parked sessions, those waiting on their goroutines too.
func (p *parker) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked) + int(p.onGo.Load())
}

// close stops the poll loop. Every session must have ended (Shutdown
// waits for them), so nothing is parked.
func (p *parker) close() {
	p.mu.Lock()
	started := p.started
	p.started, p.broken = false, true
	ep, done := p.ep, p.done
	p.mu.Unlock()
	if !started {
		return
	}
	_ = ep.Close()
	<-done
}

// control runs f with the socket's descriptor, which stays open meanwhile.
func control(nc net.Conn, f func(fd int)) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return errors.ErrUnsupported
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}
