package model

import (
	"errors"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/instructflow/instructflow/model/kernel"
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

// goid returns the id of the calling goroutine, from its stack header.
func goid() string {
	b := make([]byte, 64)
	return strings.Fields(string(b[:runtime.Stack(b, false)]))[1]
}

// TestPoolRunPanics: a task that panics, on a helper or on the caller,
// reaches run's caller as a panic with the task's own value, only after
// the other tasks of the call have stopped, and the pool keeps working.
func TestPoolRunPanics(t *testing.T) {
	boom := errors.New("boom")
	for _, on := range []string{"helper", "caller"} {
		t.Run(on, func(t *testing.T) {
			p := pool{threads: 2}
			caller := goid()
			for round := range 50 {
				var started sync.WaitGroup
				started.Add(2)
				var finished atomic.Int32
				got := func() (v any) {
					defer func() { v = recover() }()
					p.run(2, func(int) {
						started.Done()
						started.Wait() // the two tasks run on two goroutines
						if (goid() == caller) == (on == "caller") {
							panic(boom)
						}
						time.Sleep(time.Millisecond) // the other task is still running when the panic happens
						finished.Add(1)
					})
					return nil
				}()
				if got != boom {
					t.Fatalf("round %d: run's caller recovered %v, want the task's panic %v", round, got, boom)
				}
				if finished.Load() != 1 {
					t.Fatalf("round %d: run panicked before its other task had finished", round)
				}
			}
			hits := make([]int32, 100)
			p.run(len(hits), func(i int) { hits[i]++ })
			for i, h := range hits {
				if h != 1 {
					t.Fatalf("after the panics, task %d ran %d times", i, h)
				}
			}
		})
	}
}

// TestPoolRunGoexit: a task that calls runtime.Goexit on a helper (as
// t.FailNow does) fails the call with a panic instead of leaving the
// caller waiting forever, and the pool starts a new helper.
func TestPoolRunGoexit(t *testing.T) {
	p := pool{threads: 2}
	caller := goid()
	var started sync.WaitGroup
	started.Add(2)
	got := func() (v any) {
		defer func() { v = recover() }()
		p.run(2, func(int) {
			started.Done()
			started.Wait()
			if goid() != caller {
				runtime.Goexit()
			}
		})
		return nil
	}()
	if got != errTaskExited {
		t.Fatalf("run's caller recovered %v, want %v", got, errTaskExited)
	}
	var ran atomic.Int32
	p.run(64, func(int) { ran.Add(1) })
	if ran.Load() != 64 {
		t.Fatalf("after a helper exited, %d of 64 tasks ran", ran.Load())
	}
}

// TestGemmPanels checks the product on packed weights against the one on
// row-major weights, on every kernel level, with either operand given
// transposed: the same bits where the in-place kernel runs both (p.gemm's
// column tiles start at multiples of 64, like the panels, so the same
// columns take the kernel's vector and scalar paths), and close everywhere.
// The shapes have decode-step row counts and training ones (200 rows, in
// row tiles; k 700, in two of the kernel's k blocks), partial panels of 8
// and 52 columns (the AVX2 kernel splits the latter into tiles and a
// tail), and beta 0 and 1.
func TestGemmPanels(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		for _, tc := range []struct{ m, k, n int }{{5, 37, 200}, {16, 40, 180}, {64, 24, 2100}, {200, 700, 116}} {
			m, k, n := tc.m, tc.k, tc.n
			rng := NewRNG(7)
			a, aT, b, bT := make([]float32, m*k), make([]float32, k*m), make([]float32, k*n), make([]float32, n*k)
			for i := range a {
				a[i] = rng.Norm()
				aT[(i%k)*m+i/k] = a[i]
			}
			for i := range b {
				b[i] = rng.Norm()
				bT[(i%n)*k+i/n] = b[i]
			}
			p := pool{threads: 2}
			packed := packPanels(p, b, k, n, false)
			if sameBits(packPanels(p, bT, k, n, true), packed) >= 0 {
				t.Fatalf("%v: the transposed pack differs from the pack", tc)
			}
			for _, beta := range []float32{0, 1} {
				start := make([]float32, m*n)
				for i := range start {
					start[i] = float32(i % 3)
				}
				want := append([]float32(nil), start...)
				p.gemm(false, false, m, n, k, 0.5, a, k, b, n, beta, want, n)
				for _, way := range []struct {
					name   string
					transA bool
					run    func(c []float32)
				}{
					{"packed", false, func(c []float32) { p.gemmPanels(false, m, n, k, 0.5, a, k, packed, beta, c, n) }},
					{"packed, a transposed", true, func(c []float32) { p.gemmPanels(true, m, n, k, 0.5, aT, m, packed, beta, c, n) }},
					{"b transposed", false, func(c []float32) { p.gemm(false, true, m, n, k, 0.5, a, k, bT, k, beta, c, n) }},
				} {
					got := append([]float32(nil), start...)
					way.run(got)
					rows, _ := gemmTiles(m, n)
					exact := kernel.InPlace(false, rows) && kernel.InPlace(way.transA, rows)
					for i := range want {
						if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) || exact && got[i] != want[i] {
							t.Fatalf("%v beta %v: %s: element %d: %v, row-major %v", tc, beta, way.name, i, got[i], want[i])
						}
					}
				}
			}
		}
	})
}

// TestSamplePackedWeights checks that a sampler of more than thinPanelRows
// sequences (row-major weights) and one of a single sequence (packed
// weights) draw the same greedy tokens with the same log-probabilities
// where the thin kernel runs both.
func TestSamplePackedWeights(t *testing.T) {
	forEachLevel(t, func(t *testing.T) {
		if kernel.Level() == kernel.Generic {
			t.Skip("the generic level's products go to BLAS, whose bits depend on the layout")
		}
		m, err := New(detConfig, NewRNG(5))
		if err != nil {
			t.Fatal(err)
		}
		prompt := []int32{1, 2, 3}
		many := make([][]int32, thinPanelRows+1)
		for i := range many {
			many[i] = prompt
		}
		sc := SampleConfig{MaxTokens: 12, Temperature: 0, StopToken: -1}
		one, err := m.Sample([][]int32{prompt}, sc, NewRNG(9))
		if err != nil {
			t.Fatal(err)
		}
		all, err := m.Sample(many, sc, NewRNG(9))
		if err != nil {
			t.Fatal(err)
		}
		if !equalInts(one[0].Tokens, all[0].Tokens) || sameBits(one[0].LogProbs, all[0].LogProbs) >= 0 {
			t.Fatalf("packed %v, row-major %v", one[0], all[0])
		}
	})
}

// TestGemmEmpty: a product with no rows or no columns (an empty batch)
// writes nothing and does not divide by zero choosing its tiles.
func TestGemmEmpty(t *testing.T) {
	p := pool{threads: 2}
	for _, s := range []struct{ m, n, k int }{{0, 8, 4}, {8, 0, 4}, {0, 0, 0}} {
		for _, transB := range []bool{false, true} {
			a, b := make([]float32, s.m*s.k+1), make([]float32, s.k*s.n+1)
			c := []float32{7}
			ldb := s.n
			if transB {
				ldb = s.k
			}
			p.gemm(false, transB, s.m, s.n, s.k, 1, a, max(s.k, 1), b, max(ldb, 1), 0, c, max(s.n, 1))
			if c[0] != 7 && s.m*s.n == 0 {
				t.Errorf("%+v transB %v: wrote %v to an empty product's c", s, transB, c[0])
			}
		}
	}
}
