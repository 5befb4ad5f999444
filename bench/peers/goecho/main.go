// goecho — the Go peer of the echo shoot-out (bench/shootout.py): the echo
// server as a Go programmer writes it, standard library only. One goroutine
// per connection, each blocking in conn.Read; Go's netpoller (epoll on Linux,
// registered once, edge-triggered) parks it, as mini-netpoll parks a G.
//
//	goecho [-addr HOST:PORT]   (default 127.0.0.1:0: a free port)
//
// Prints "goecho: listening on ADDR (pid N)". SIGTERM or SIGINT ends it (the
// default action: the run's numbers are taken from outside the process).
// GOMAXPROCS follows the CPU affinity (taskset), as Go's runtime does.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

// The same read size as demos/echo/echo_server.cpp, so that both servers
// make the same reads and writes.
const bufSize = 16 * 1024

func serve(c net.Conn) {
	defer c.Close()
	// TCP_NODELAY is Go's default for TCP connections: nothing to set.
	buf := make([]byte, bufSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "where to listen (port 0: any free port)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goecho:", err)
		os.Exit(1)
	}
	fmt.Printf("goecho: listening on %s (pid %d)\n", ln.Addr(), os.Getpid())
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of fds and the like: back off as net/http does.
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				time.Sleep(delay)
				continue
			}
			fmt.Fprintln(os.Stderr, "goecho:", err)
			os.Exit(1)
		}
		delay = 0
		go serve(c)
	}
}
