package main

import (
	"io"
	"net"
	"testing"
)

// TestRelay checks that bytes go both ways and that each side's close
// reaches the other.
func TestRelay(t *testing.T) {
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
		got, _ := io.ReadAll(c) // until the client's half-close arrives
		_, _ = c.Write(append([]byte("echo:"), got...))
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { serve(ln, backend.Addr().String()); close(done) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c) // ends when the backend's close is relayed
	if err != nil || string(got) != "echo:ping" {
		t.Fatalf("relayed %q, %v", got, err)
	}
	ln.Close()
	<-done
}
