//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package pool

import (
	"errors"
	"net"
	"syscall"
)

// alive looks at an idle connection's socket without blocking and without
// a round trip. An idle backend sends nothing unasked except to say it is
// going away (FATAL 57P01 at shutdown, idle_session_timeout,
// pg_terminate_backend) before it closes, so pending bytes or end of
// stream both mean the connection is dead. Connections that are not
// sockets (test pipes) are assumed alive.
func (c *Conn) alive() bool {
	nc := c.Conn
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		nc = u.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Nothing to read (EAGAIN) is the healthy answer; EINTR says
		// nothing either way.
		alive = n <= 0 && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR))
		return true
	})
	return err == nil && alive
}
