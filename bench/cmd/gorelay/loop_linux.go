//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// serveLoop relays like serve, but built the way PgBouncer is: one OS
// thread waits in epoll_wait (level-triggered) on every socket and, for
// each readable one, reads once and writes what it read to the other side.
// No goroutine parks or wakes per message, and no read is made that the
// kernel has not said will succeed. It is the floor of an event-loop design
// in Go, to set beside serve's goroutine-per-connection floor. It returns
// when stop is closed (within 200 ms), closing every relayed connection.
func serveLoop(ln net.Listener, backend string, stop <-chan struct{}) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lfd, err := listenerFD(ln)
	if err != nil {
		return err
	}
	sa, err := backendAddr(backend)
	if err != nil {
		return err
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	defer syscall.Close(ep)
	l := &loop{ep: ep, ends: map[int]*end{}, buf: make([]byte, 64<<10)}
	defer l.closeAll()
	if err := l.ctl(syscall.EPOLL_CTL_ADD, lfd, syscall.EPOLLIN); err != nil {
		return err
	}
	events := make([]syscall.EpollEvent, 256)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		// Ask without blocking first, as the Go runtime's own poller does:
		// a raw call costs the scheduler nothing, a blocking one may cost
		// the thread its P.
		n, err := epollWaitRaw(ep, events)
		if err == nil && n == 0 {
			n, err = syscall.EpollWait(ep, events, 200)
		}
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				l.accept(lfd, sa)
				continue
			}
			e := l.ends[fd]
			if e == nil {
				continue // closed earlier in this batch
			}
			if ev.Events&syscall.EPOLLOUT != 0 {
				l.flush(e.peer)
				// A hung-up peer is out of the poll set: read it on.
				for x := e.peer; x.hup && len(x.pending) == 0 && !x.eof && l.ends[x.fd] == x; {
					if !l.read(x) {
						break
					}
				}
			}
			if l.ends[fd] != e {
				continue
			}
			switch {
			case ev.Events&syscall.EPOLLERR != 0:
				l.closePair(e)
			case ev.Events&(syscall.EPOLLIN|syscall.EPOLLHUP) != 0 && len(e.pending) == 0 && !e.eof:
				l.read(e)
			case ev.Events&syscall.EPOLLHUP != 0 && len(e.peer.pending) > 0:
				l.closePair(e) // shut both ways: what waits for it cannot go
			case ev.Events&syscall.EPOLLHUP != 0 && !e.hup:
				// Shut both ways with data still unread, while its peer
				// cannot take more: epoll reports a hang-up whatever it
				// is asked for, so take e out of the set until then.
				e.hup = true
				_ = syscall.EpollCtl(l.ep, syscall.EPOLL_CTL_DEL, e.fd, nil)
			}
		}
	}
}

// end is one socket of a relayed pair.
type end struct {
	fd       int
	peer     *end
	pending  []byte // read from this end, not yet written to peer
	eof      bool   // this end sent FIN; peer's write side is (or will be) shut
	hup      bool   // shut both ways and out of the epoll set
	interest uint32 // the epoll events registered for fd
}

type loop struct {
	ep   int
	ends map[int]*end
	buf  []byte
}

func (l *loop) ctl(op, fd int, events uint32) error {
	ev := syscall.EpollEvent{Events: events, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.ep, op, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// accept takes every pending client and pairs each with a new backend
// connection (connected blocking: on loopback that is one quick call).
func (l *loop) accept(lfd int, sa syscall.Sockaddr) {
	for {
		cfd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR) {
				fmt.Fprintln(os.Stderr, "gorelay: accept:", err)
			}
			return
		}
		bfd, err := dialBlocking(sa)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gorelay: dial:", err)
			syscall.Close(cfd)
			continue
		}
		c, b := &end{fd: cfd}, &end{fd: bfd}
		c.peer, b.peer = b, c
		l.ends[cfd], l.ends[bfd] = c, b
		for _, e := range []*end{c, b} {
			_ = syscall.SetsockoptInt(e.fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
			e.interest = syscall.EPOLLIN
			if err := l.ctl(syscall.EPOLL_CTL_ADD, e.fd, e.interest); err != nil {
				fmt.Fprintln(os.Stderr, "gorelay:", err)
				l.closePair(c)
				break
			}
		}
	}
}

func dialBlocking(sa syscall.Sockaddr) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// read reads once from e and writes what came to its peer; what the peer
// cannot take yet waits in e.pending, and e is not read again until it is
// gone. It reports whether it read anything or e's end.
func (l *loop) read(e *end) bool {
	n, err := rawIO(syscall.SYS_READ, e.fd, l.buf)
	switch {
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
		return false
	case err != nil:
		l.closePair(e)
		return true
	case n == 0:
		e.eof = true
		_ = syscall.Shutdown(e.peer.fd, syscall.SHUT_WR)
		if e.peer.eof {
			l.closePair(e)
			return true
		}
	default:
		e.pending = l.buf[:n]
		l.flush(e)
		if len(e.pending) > 0 {
			e.pending = append([]byte(nil), e.pending...) // l.buf is reused
		}
	}
	l.update(e)
	l.update(e.peer)
	return true
}

// flush writes e.pending to e's peer, as much as it takes.
func (l *loop) flush(e *end) {
	for len(e.pending) > 0 {
		n, err := rawIO(syscall.SYS_WRITE, e.peer.fd, e.pending)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if err != nil {
			l.closePair(e)
			return
		}
		e.pending = e.pending[n:]
	}
	if len(e.pending) == 0 {
		e.pending = nil
	}
	l.update(e)
	l.update(e.peer)
}

// update registers what e waits for: input while it has no unwritten data
// and has not ended, output while its peer has data for it.
func (l *loop) update(e *end) {
	if l.ends[e.fd] != e || e.hup {
		return
	}
	var want uint32
	if !e.eof && len(e.pending) == 0 {
		want |= syscall.EPOLLIN
	}
	if len(e.peer.pending) > 0 {
		want |= syscall.EPOLLOUT
	}
	if want != e.interest {
		e.interest = want
		if err := l.ctl(syscall.EPOLL_CTL_MOD, e.fd, want); err != nil {
			fmt.Fprintln(os.Stderr, "gorelay:", err)
		}
	}
}

func (l *loop) closePair(e *end) {
	for _, x := range []*end{e, e.peer} {
		if l.ends[x.fd] == x {
			delete(l.ends, x.fd)
			syscall.Close(x.fd) // also leaves the epoll set
		}
	}
}

func (l *loop) closeAll() {
	for _, e := range l.ends {
		l.closePair(e)
	}
}

// listenerFD is ln's socket, which the loop accepts on directly.
func listenerFD(ln net.Listener) (int, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return -1, fmt.Errorf("gorelay: %T is not a TCP listener", ln)
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}

func backendAddr(backend string) (syscall.Sockaddr, error) {
	a, err := net.ResolveTCPAddr("tcp4", backend)
	if err != nil {
		return nil, err
	}
	sa := &syscall.SockaddrInet4{Port: a.Port}
	copy(sa.Addr[:], a.IP.To4())
	return sa, nil
}

// rawIO is read(2) or write(2) on a non-blocking socket, which returns at
// once, so it skips the bookkeeping the runtime does around a call that
// may block.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	r, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// epollWaitRaw is epoll_wait(2) with a zero timeout.
func epollWaitRaw(ep int, events []syscall.EpollEvent) (int, error) {
	r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(ep),
		uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
