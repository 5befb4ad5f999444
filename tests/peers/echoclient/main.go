// Command echoclient is a load client for mini-netpoll's echo server, written
// with Go's own net package: the runtime that mini-netpoll imitates plays the
// peer, so the server is tested against a netpoller known to be right.
//
// It opens -conns connections at once (all are dialed before any sends), then
// each plays -rounds ping-pong rounds with a random payload of 1..-size bytes,
// reading the echo back in full and checking every byte. -kill K picks K
// connections that, halfway through, send part of a message and then reset the
// connection (SetLinger(0) then Close: the kernel sends RST instead of FIN), so
// the server sees "connection reset by peer" with data in flight.
//
// It exits 0 when every byte of every non-killed connection came back intact,
// 1 otherwise, 2 on bad flags.
//
//	echoclient -addr 127.0.0.1:9000 -conns 1000 -rounds 20 -kill 50
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

type stats struct {
	dialed    atomic.Int64
	messages  atomic.Int64
	bytes     atomic.Int64
	killed    atomic.Int64
	errors    atomic.Int64
	mismatch  atomic.Int64
	errorsMu  sync.Mutex
	errorsLog []string
}

const errorsShown = 10

func (s *stats) fail(id int, format string, args ...any) {
	s.errors.Add(1)
	s.errorsMu.Lock()
	defer s.errorsMu.Unlock()
	if len(s.errorsLog) < errorsShown {
		s.errorsLog = append(s.errorsLog, fmt.Sprintf("conn %d: ", id)+fmt.Sprintf(format, args...))
	}
}

type config struct {
	addr    string
	rounds  int
	size    int
	timeout time.Duration
	seed    int64
}

// run is one connection: dial, wait for every other connection to be dialed,
// then ping-pong. kill says whether this one resets itself halfway.
func run(id int, cfg *config, kill bool, s *stats, dialed *sync.WaitGroup, start <-chan struct{}) {
	conn, err := net.DialTimeout("tcp", cfg.addr, cfg.timeout)
	dialed.Done()
	if err != nil {
		s.fail(id, "dial: %v", err)
		return
	}
	s.dialed.Add(1)
	tcp := conn.(*net.TCPConn)
	defer conn.Close()
	<-start
	conn.SetDeadline(time.Now().Add(cfg.timeout))

	rng := rand.New(rand.NewSource(cfg.seed + int64(id)))
	sent := make([]byte, cfg.size)
	got := make([]byte, cfg.size)
	killAt := cfg.rounds / 2
	for round := 0; round < cfg.rounds; round++ {
		n := 1 + rng.Intn(cfg.size)
		rng.Read(sent[:n])
		if kill && round == killAt {
			// Part of a message, then RST: the server has data to echo into
			// a connection that no longer exists.
			if _, err := conn.Write(sent[:1+n/2]); err != nil {
				s.fail(id, "round %d: write before reset: %v", round, err)
				return
			}
			tcp.SetLinger(0)
			tcp.Close()
			s.killed.Add(1)
			return
		}
		if _, err := conn.Write(sent[:n]); err != nil {
			s.fail(id, "round %d: write %d bytes: %v", round, n, err)
			return
		}
		if m, err := io.ReadFull(conn, got[:n]); err != nil {
			s.fail(id, "round %d: read %d of %d bytes: %v", round, m, n, err)
			return
		}
		if !bytes.Equal(sent[:n], got[:n]) {
			off := 0
			for sent[off] == got[off] {
				off++
			}
			s.mismatch.Add(1)
			s.fail(id, "round %d: MISMATCH at offset %d of %d: got %#02x, want %#02x",
				round, off, n, got[off], sent[off])
			return
		}
		s.messages.Add(1)
		s.bytes.Add(int64(n))
	}
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:9000", "echo server address")
	conns := flag.Int("conns", 1000, "concurrent connections")
	flag.IntVar(&cfg.rounds, "rounds", 20, "ping-pong rounds per connection")
	flag.IntVar(&cfg.size, "size", 4096, "largest payload in bytes (each round picks 1..size)")
	kill := flag.Int("kill", 0, "connections that reset themselves (SetLinger(0), Close) mid-stream")
	flag.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "dial timeout, and deadline for each connection's whole run")
	flag.Int64Var(&cfg.seed, "seed", 0, "random seed (0: from the clock)")
	flag.Parse()
	if *conns < 1 || cfg.rounds < 2 || cfg.size < 1 || *kill < 0 || *kill > *conns {
		fmt.Fprintln(os.Stderr, "echoclient: need conns >= 1, rounds >= 2, size >= 1, 0 <= kill <= conns")
		os.Exit(2)
	}
	if cfg.seed == 0 {
		cfg.seed = time.Now().UnixNano()
	}

	toKill := make(map[int]bool, *kill)
	for _, id := range rand.New(rand.NewSource(cfg.seed)).Perm(*conns)[:*kill] {
		toKill[id] = true
	}

	var s stats
	var dialed, done sync.WaitGroup
	start := make(chan struct{})
	t0 := time.Now()
	dialed.Add(*conns)
	done.Add(*conns)
	for id := 0; id < *conns; id++ {
		go func(id int) {
			defer done.Done()
			run(id, &cfg, toKill[id], &s, &dialed, start)
		}(id)
	}
	dialed.Wait()
	dialTime := time.Since(t0)
	close(start)
	done.Wait()
	elapsed := time.Since(t0)

	for _, e := range s.errorsLog {
		fmt.Fprintln(os.Stderr, "echoclient:", e)
	}
	if n := s.errors.Load(); n > errorsShown {
		fmt.Fprintf(os.Stderr, "echoclient: ... and %d more errors\n", n-errorsShown)
	}
	fmt.Printf("echoclient: %s: conns %d (all open at once: %d, dialed in %v), killed %d, rounds %d, "+
		"messages %d, bytes %d, errors %d (mismatches %d), elapsed %v, seed %d\n",
		cfg.addr, *conns, s.dialed.Load(), dialTime.Round(time.Millisecond), s.killed.Load(), cfg.rounds,
		s.messages.Load(), s.bytes.Load(), s.errors.Load(), s.mismatch.Load(),
		elapsed.Round(time.Millisecond), cfg.seed)
	if s.errors.Load() != 0 || s.killed.Load() != int64(*kill) {
		os.Exit(1)
	}
}
