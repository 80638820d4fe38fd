package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/pgbridge/pgbridge/internal/sockio"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept clients on")
	backend := flag.String("backend", "127.0.0.1:5432", "PostgreSQL address to relay each client to")
	mode := flag.String("loop", "goroutines", "goroutines (two per client: the goroutine model pgbridge uses) or epoll (one thread on an epoll set, as PgBouncer)")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gorelay:", err)
		os.Exit(1)
	}
	fmt.Println("gorelay: listening on", ln.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	switch *mode {
	case "goroutines":
		go func() {
			<-sig
			ln.Close()
		}()
		serve(ln, *backend)
	case "epoll":
		stop := make(chan struct{})
		go func() {
			<-sig
			close(stop)
		}()
		if err := serveLoop(ln, *backend, stop); err != nil {
			fmt.Fprintln(os.Stderr, "gorelay:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "gorelay: -loop %q: want goroutines or epoll\n", *mode)
		os.Exit(2)
	}
	// Clients still connected are cut off: the harness stops the relay
	// between runs, when nobody is connected.
}

// serve relays every client ln accepts until ln is closed.
func serve(ln net.Listener, backend string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			fmt.Fprintln(os.Stderr, "gorelay: accept:", err)
			continue
		}
		go relay(c, backend)
	}
}

// relay copies bytes both ways until either side closes.
func relay(c net.Conn, backend string) {
	defer c.Close()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gorelay: dial:", err)
		return
	}
	defer b.Close()
	// The same socket calls as pgbridge's (and no splice, which io.Copy
	// between two TCP connections would use).
	cs, bs := sockio.Wrap(c), sockio.Wrap(b)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(cs, bs)
		_ = c.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(bs, cs)
	_ = b.(*net.TCPConn).CloseWrite()
	<-done
}
