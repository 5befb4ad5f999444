// The Go 1.19 twins of bench/sync_bench.cpp: the same workloads, the same
// parameters, one "op" meaning the same thing (see that file's header).
// -cpu 1,2,4 plays the part of the C++ side's Ps argument.
//
//	go test -run '^$' -bench . -count 5 -cpu 1,2,4
package gomicro

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func BenchmarkChanPingPong(b *testing.B) {
	ping, pong := make(chan int), make(chan int)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		for v := range ping {
			pong <- v
		}
		wg.Done()
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ping <- 1
		<-pong
	}
	b.StopTimer()
	close(ping)
	wg.Wait()
}

func BenchmarkChanBuffered(b *testing.B) {
	ch := make(chan int64, 128)
	n := b.N
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		for i := 0; i < n; i++ {
			ch <- int64(i)
		}
		wg.Done()
	}()
	b.ResetTimer()
	var sink int64
	for i := 0; i < n; i++ {
		sink += <-ch
	}
	b.StopTimer()
	wg.Wait()
	_ = sink
}

func BenchmarkSpawnExit(b *testing.B) {
	var wg sync.WaitGroup
	for i := 0; i < b.N; i++ {
		wg.Add(1)
		go func() { wg.Done() }()
		wg.Wait()
	}
}

func BenchmarkMutexHandOff(b *testing.B) {
	var mu sync.Mutex
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		for !stop.Load() {
			mu.Lock()
			runtime.Gosched()
			mu.Unlock()
		}
		wg.Done()
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		mu.Lock()
		runtime.Gosched()
		mu.Unlock()
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
}

// ~10 µs of dependent multiplies, as in the C++ twin.
//
//go:noinline
func work(x uint64) uint64 {
	for i := 0; i < 10000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

func BenchmarkScaling(b *testing.B) {
	const gs, units = 8, 16
	var sink atomic.Uint64
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		wg.Add(gs)
		for g := 0; g < gs; g++ {
			go func(x uint64) {
				for u := 0; u < units; u++ {
					x = work(x)
					runtime.Gosched()
				}
				sink.Add(x)
				wg.Done()
			}(uint64(g))
		}
		wg.Wait()
	}
}
