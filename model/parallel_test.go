package model

import (
	"sync"
	"testing"
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
