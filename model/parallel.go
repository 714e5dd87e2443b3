package model

import (
	"sync"
	"sync/atomic"

	"github.com/instructflow/instructflow/model/kernel"
)

// Work is split into tasks whose boundaries depend only on the shapes, never
// on the number of threads: every task computes the same numbers in the same
// order whoever runs it, so results are bit-identical across thread counts.
const (
	rowChunk = 64  // rows (tokens) per task in row-wise layers
	colChunk = 256 // columns per task in column-wise reductions
)

// pool runs tasks on a fixed number of goroutines.
type pool struct {
	threads int
}

// run calls fn(i) for every i in [0, n), spread over the pool's threads, and
// returns when all calls have returned.
func (p pool) run(n int, fn func(i int)) {
	if p.threads <= 1 || n <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			fn(i)
		}
	}
	var wg sync.WaitGroup
	for range min(p.threads, n) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// chunks returns how many tasks of size chunk cover n items.
func chunks(n, chunk int) int { return (n + chunk - 1) / chunk }

// gemm is kernel.Gemm split into tiles of c that run in parallel:
// c (m,n) = alpha*op(a) (m,k) @ op(b) (k,n) + beta*c. The tiles (see
// gemmTiles) depend on the shape alone.
func (p pool) gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	rows, cols := gemmTiles(m, n)
	tn := chunks(n, cols)
	p.run(chunks(m, rows)*tn, func(t int) {
		i0, j0 := (t/tn)*rows, (t%tn)*cols
		mm, nn := min(rows, m-i0), min(cols, n-j0)
		ao := i0 * lda
		if transA {
			ao = i0
		}
		bo := j0
		if transB {
			bo = j0 * ldb
		}
		kernel.Gemm(transA, transB, mm, nn, k, alpha, a[ao:], lda, b[bo:], ldb, beta, c[i0*ldc+j0:], ldc)
	})
}

// gemmTiles returns the tile shape for an (m,n) product: about gemmTasks
// tiles, as large as possible (each call repacks its operands), rows a
// multiple of 16 and columns of 64 (the kernel's register tiles).
func gemmTiles(m, n int) (rows, cols int) {
	const gemmTasks = 8
	rows = max(32, (chunks(m, gemmTasks)+15)/16*16)
	cols = n
	if tm := chunks(m, rows); tm < gemmTasks {
		cols = max(64, (chunks(n, chunks(gemmTasks, tm))+63)/64*64)
	}
	return rows, cols
}
