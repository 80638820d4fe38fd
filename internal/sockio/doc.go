// Package sockio reads and writes sockets with raw system calls.
//
// Go's net.Conn enters every read and write through the runtime's syscall
// bookkeeping, so that a blocking call does not hold its processor. A
// non-blocking socket call never blocks, but on loopback a write carries
// the receiving side's network stack and wake-up and takes tens of
// microseconds; when that spans a tick of the runtime's monitor, the
// monitor hands the processor to another thread, and the writer must win
// one back when it returns. Under a proxy's load that hand-over happens on
// a large share of writes and costs more than the write. Conn makes the
// same calls with syscall.RawSyscall through the socket's RawConn, which
// keeps the poller's waiting, deadlines and Close semantics.
//
// The calls are recvfrom and sendto (with MSG_NOSIGNAL) rather than read and
// write: they reach the socket without the file layer's position lock,
// permission hook and change notifications (about 1% of the router's CPU
// on select-only load, by perf). 32-bit x86, which has no direct socket
// calls, keeps read and write.
package sockio
