package model

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolRun checks that every task runs exactly once and that its writes
// are visible when run returns, with pools of several sizes used at once
// from several goroutines (the helpers are shared).
func TestPoolRun(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			p := pool{threads: 1 + g%4}
			for round := range 300 {
				n := round % 37
				hits := make([]int32, n)
				p.run(n, func(i int) { hits[i]++ })
				for i, h := range hits {
					if h != 1 {
						t.Errorf("threads %d, n %d: task %d ran %d times", p.threads, n, i, h)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestPoolRunNested runs pools inside tasks, with tasks slow enough that
// callers park while helpers finish, and checks every innermost task ran
// once.
func TestPoolRunNested(t *testing.T) {
	p := pool{threads: 3}
	var total atomic.Int64
	hits := make([]int32, 4*3*5)
	p.run(4, func(a int) {
		p.run(3, func(b int) {
			p.run(5, func(c int) {
				if c%2 == 0 {
					time.Sleep(time.Millisecond)
				}
				hits[(a*3+b)*5+c]++
				total.Add(1)
			})
		})
	})
	for i, h := range hits {
		if h != 1 {
			t.Fatalf("task %d ran %d times", i, h)
		}
	}
	if total.Load() != int64(len(hits)) {
		t.Fatalf("%d tasks ran, want %d", total.Load(), len(hits))
	}
}
