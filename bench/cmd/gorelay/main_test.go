package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// TestRelay checks, for both loops, that bytes go both ways, a few or
// more than the sockets hold, and that each side's close reaches the
// other.
func TestRelay(t *testing.T) {
	big := make([]byte, 16<<20)
	for i := range big {
		big[i] = byte(i % 251)
	}
	for _, payload := range [][]byte{[]byte("ping"), big} {
		t.Run(fmt.Sprintf("goroutines/%d", len(payload)), func(t *testing.T) {
			testRelay(t, payload, func(ln net.Listener, backend string) func() {
				done := make(chan struct{})
				go func() { serve(ln, backend); close(done) }()
				return func() { ln.Close(); <-done }
			})
		})
		t.Run(fmt.Sprintf("epoll/%d", len(payload)), func(t *testing.T) {
			testRelay(t, payload, func(ln net.Listener, backend string) func() {
				stop, done := make(chan struct{}), make(chan error)
				go func() { done <- serveLoop(ln, backend, stop) }()
				return func() {
					close(stop)
					if err := <-done; err != nil {
						t.Error(err)
					}
					ln.Close()
				}
			})
		})
	}
}

// testRelay relays payload from a client to an echoing backend and back
// through the relay that start starts, and stops it with what start
// returns.
func testRelay(t *testing.T, payload []byte, start func(ln net.Listener, backend string) (stop func())) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		// Read late, so that the relay meets a full socket and must hold
		// what it read until the backend takes it.
		time.Sleep(100 * time.Millisecond)
		got, _ := io.ReadAll(c) // until the client's half-close arrives
		_, _ = c.Write(append([]byte("echo:"), got...))
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := start(ln, backend.Addr().String())
	defer stop()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		_, _ = c.Write(payload)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c) // ends when the backend's close is relayed
	if err != nil || !bytes.Equal(got, append([]byte("echo:"), payload...)) {
		t.Fatalf("relayed %d bytes (%.20q), %v; want %d", len(got), got, err, len(payload)+5)
	}
}
