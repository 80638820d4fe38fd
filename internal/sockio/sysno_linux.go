//go:build linux && !386

package sockio

import "syscall"

// The socket calls: see the package comment.
const (
	sysRecv = syscall.SYS_RECVFROM
	sysSend = syscall.SYS_SENDTO
)
