package proxy

import "golang.org/x/sys/unix"

// tcpPeerClosed reports, from the kernel's TCP state, whether the peer of
// the socket fd has closed its side (FIN received: CLOSE_WAIT) or reset
// the connection, whatever unread bytes (a Terminate, say) come before
// that. known is false when the state cannot be read.
func tcpPeerClosed(fd int) (closed, known bool) {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return false, false
	}
	switch info.State {
	case unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_LAST_ACK, unix.BPF_TCP_CLOSE:
		return true, true
	}
	return false, true
}
