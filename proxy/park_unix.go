//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// waitReadable blocks until nc has bytes (or end of stream) to read,
// without reading them, so a parked session needs no read buffer.
func waitReadable(nc net.Conn) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil // not a socket: the next read blocks instead
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR)
	})
}

// peerClosed reports whether nc's client has hung up: on Linux from the
// socket's TCP state, elsewhere when it reads end of stream (or a reset)
// with nothing left unread before it (a Terminate ahead of the end of
// stream hides it there). Under TLS the raw socket is checked. It never
// blocks and reads nothing.
func peerClosed(nc net.Conn) bool {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true // closed
	}
	closed := false
	var b [1]byte
	if err := rc.Control(func(fd uintptr) {
		if c, known := tcpPeerClosed(int(fd)); known {
			closed = c
			return
		}
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil:
			closed = n == 0
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		default:
			closed = true // ECONNRESET and the like
		}
	}); err != nil {
		return true
	}
	return closed
}
