//go:build !linux

package sockio

import "net"

// Wrap returns c: outside Linux the runtime's own socket calls are used.
func Wrap(c net.Conn) net.Conn { return c }
