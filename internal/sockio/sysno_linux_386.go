package sockio

import "syscall"

// 32-bit x86 reaches the socket calls through socketcall(2) only: use read
// and write, which ignore the extra arguments.
const (
	sysRecv = syscall.SYS_READ
	sysSend = syscall.SYS_WRITE
)
