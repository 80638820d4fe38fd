//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

import "net"

// waitReadable cannot peek here: the session reads on with a fresh buffer,
// which blocks until the client speaks, as before parking.
func waitReadable(net.Conn) error { return nil }

// peerClosed cannot peek here: a client that hangs up during a wait is
// noticed when the session next reads.
func peerClosed(net.Conn) bool { return false }
