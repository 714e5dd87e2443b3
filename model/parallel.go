package model

import (
	"sync"
	"sync/atomic"

	"github.com/instructflow/instructflow/model/blas"
)

// Work is split into tasks whose boundaries depend only on the shapes, never
// on the number of threads: every task computes the same numbers in the same
// order whoever runs it, so results are bit-identical across thread counts.
const (
	rowChunk = 64  // rows (tokens) per task for row-wise layers and GEMM tiles
	colChunk = 256 // output columns per GEMM tile
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

// gemm is blas.Gemm split into fixed (rowChunk, colChunk) tiles of c that run
// in parallel: c (m,n) = alpha*op(a) (m,k) @ op(b) (k,n) + beta*c.
func (p pool) gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	tm, tn := chunks(m, rowChunk), chunks(n, colChunk)
	p.run(tm*tn, func(t int) {
		i0, j0 := (t/tn)*rowChunk, (t%tn)*colChunk
		mm, nn := min(rowChunk, m-i0), min(colChunk, n-j0)
		ao := i0 * lda
		if transA {
			ao = i0
		}
		bo := j0
		if transB {
			bo = j0 * ldb
		}
		blas.Gemm(transA, transB, mm, nn, k, alpha, a[ao:], lda, b[bo:], ldb, beta, c[i0*ldc+j0:], ldc)
	})
}
