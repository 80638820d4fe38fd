//go:build !linux

package main

import (
	"errors"
	"net"
)

func serveLoop(net.Listener, string, <-chan struct{}) error {
	return errors.New("gorelay: -loop epoll needs Linux")
}
