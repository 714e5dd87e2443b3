package model

import (
	"errors"
	"runtime"
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

// pool runs tasks on a fixed number of threads: the caller and threads-1
// helper goroutines.
type pool struct {
	threads int
}

// run calls fn(i) for every i in [0, n), spread over the pool's threads, and
// returns when all calls have returned. A task that panics, on whichever
// goroutine, makes run panic with the same value on the caller's goroutine
// (where a recover, such as the Temporal SDK's around an activity, sees it)
// once every task has stopped; the tasks not yet started are skipped. The
// stack of the panic is then the caller's, from run down.
func (p pool) run(n int, fn func(i int)) {
	if p.threads <= 1 || n <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	j := &job{fn: fn, n: int64(n), fin: make(chan struct{})}
	jobs := startHelpers(min(p.threads, n) - 1)
	for range min(p.threads, n) - 1 {
		select {
		case jobs <- j:
		default: // the queue is full: the caller and the helpers that are free do it
		}
	}
	j.work()
	for spin := 0; j.done.Load() < j.n; spin++ {
		if spin == spinTries {
			<-j.fin
			break
		}
		runtime.Gosched()
	}
	if j.failed.Load() {
		panic(j.panicked)
	}
}

// job is one run call's tasks. Whoever takes a job, the caller or a helper,
// claims tasks until none is left; the call that finishes the last task
// closes fin. A helper that takes a job after it is done claims nothing.
type job struct {
	fn         func(int)
	n          int64
	next, done atomic.Int64
	fin        chan struct{}
	// failed is set by the first task that panics, which keeps its value
	// in panicked (written before its done count, read after the last).
	failed   atomic.Bool
	panicked any
}

func (j *job) work() {
	for {
		i := j.next.Add(1) - 1
		if i >= j.n {
			return
		}
		if !j.failed.Load() {
			j.call(int(i))
		}
		j.finish()
	}
}

// call runs task i, recovering a panic into the job. A task that exits its
// goroutine (runtime.Goexit) instead also fails the job, and this goroutine
// claims the remaining tasks before it goes, so that nobody waits for them.
func (j *job) call(i int) {
	returned := false
	defer func() {
		if returned {
			return
		}
		v := recover()
		if v == nil {
			v = errTaskExited
		}
		if j.failed.CompareAndSwap(false, true) {
			j.panicked = v
		}
		if v == errTaskExited {
			j.finish() // task i
			for {
				if k := j.next.Add(1) - 1; k >= j.n {
					return
				}
				j.finish()
			}
		}
	}()
	j.fn(i)
	returned = true
}

// finish counts one task as done.
func (j *job) finish() {
	if j.done.Add(1) == j.n {
		close(j.fin)
	}
}

// errTaskExited is the panic of a run whose task called runtime.Goexit
// on a helper (as t.FailNow does in a test).
var errTaskExited = errors.New("model: a parallel task exited its goroutine (runtime.Goexit)")

// spinTries is how many times a helper looking for a job, and a caller
// waiting for its helpers, yield before they park (about 200 µs on the
// 2-core machine when nothing else runs): layers follow each other within
// microseconds, and waking a parked goroutine costs more than that. A job
// sent while a helper is parked goes to that helper even if others spin:
// with more helpers than a pool uses, some wake-ups are not saved.
const spinTries = 2000

// helpers are goroutines shared by every pool; they live as long as the
// process, parked when there is no work.
var helpers struct {
	sync.Mutex
	n    atomic.Int64 // started so far
	jobs chan *job
}

// maxHelpers bounds the helper goroutines and the jobs waiting for them.
const maxHelpers = 256

// startHelpers makes sure at least n helpers run and returns their queue.
func startHelpers(n int) chan<- *job {
	n = min(n, maxHelpers)
	if helpers.n.Load() >= int64(n) { // jobs is set before n grows
		return helpers.jobs
	}
	helpers.Lock()
	defer helpers.Unlock()
	if helpers.jobs == nil {
		helpers.jobs = make(chan *job, maxHelpers)
	}
	for helpers.n.Load() < int64(n) {
		go helper(helpers.jobs)
		helpers.n.Add(1)
	}
	return helpers.jobs
}

func helper(jobs <-chan *job) {
	defer helpers.n.Add(-1) // only a task's runtime.Goexit ends a helper
	for {
		var j *job
		for spin := 0; j == nil && spin < spinTries; spin++ {
			select {
			case j = <-jobs:
			default:
				runtime.Gosched()
			}
		}
		if j == nil {
			j = <-jobs
		}
		j.work()
	}
}

// chunks returns how many tasks of size chunk cover n items.
func chunks(n, chunk int) int { return (n + chunk - 1) / chunk }

// gemm is kernel.Gemm split into tiles of c that run in parallel:
// c (m,n) = alpha*op(a) (m,k) @ op(b) (k,n) + beta*c. The tiles (see
// gemmTiles) depend on the shape alone. Where kernel.Gemm reads its
// operands in place, a transposed b is packed once for all tiles instead
// (packPanels), since the in-place kernel needs b untransposed and BLAS
// would repack it in every tile.
func (p pool) gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if rows, _ := gemmTiles(m, n); transB && k > 0 && ldb == k && kernel.InPlace(transA, rows) {
		buf := packBuffer(k * n)
		defer packBuffers.Put(buf)
		p.gemmPanels(transA, m, n, k, alpha, a, lda, packPanelsInto(p, *buf, b, k, n, true), beta, c, ldc)
		return
	}
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
// tiles, as large as possible, rows a multiple of 16 above 64 and columns
// of 64 (the kernels' register tiles and packPanels' panels). An empty
// product gets one empty tile. Products of at most 64 rows are split by columns
// alone: such a product (a decode step) streams its b from memory, which
// tiles of rows would read once each.
func gemmTiles(m, n int) (rows, cols int) {
	const gemmTasks = 8
	if m == 0 || n == 0 {
		return 1, 1
	}
	rows = max(32, (chunks(m, gemmTasks)+15)/16*16)
	if m <= 64 {
		rows = m
	}
	cols = n
	if tm := chunks(m, rows); tm < gemmTasks {
		cols = max(64, (chunks(n, chunks(gemmTasks, tm))+63)/64*64)
	}
	return rows, cols
}

// panelCols is the width of packPanels' panels: the thin kernel's.
const panelCols = 64

// packPanels returns b (k,n) with each panel of panelCols columns stored
// contiguously, (k, w) row-major for a panel w wide; with trans, b is given
// as b^T (n,k). A decode step streams every weight from memory, and the
// thin kernel reads one panel at a time: a contiguous panel streams faster
// than one 256-byte piece per row of b (docs/engine-benchmarks.md).
func packPanels(p pool, b []float32, k, n int, trans bool) []float32 {
	return packPanelsInto(p, make([]float32, k*n), b, k, n, trans)
}

// packPanelsInto is packPanels into out, which it returns cut to k*n.
func packPanelsInto(p pool, out, b []float32, k, n int, trans bool) []float32 {
	out = out[:k*n]
	p.run(chunks(n, panelCols), func(t int) {
		j0 := t * panelCols
		w := min(panelCols, n-j0)
		dst := out[j0*k:]
		for r := range k {
			row := dst[r*w : (r+1)*w]
			if !trans {
				copy(row, b[r*n+j0:])
				continue
			}
			for j := range row {
				row[j] = b[(j0+j)*k+r]
			}
		}
	})
	return out
}

// packBuffers holds the buffers that p.gemm packs a transposed b into, for
// the next product: allocating one per product (154 MB for GPT-2's tied
// embedding) made the kernel clear fresh pages for much of a training step.
var packBuffers sync.Pool

// packBuffer returns a buffer of at least n floats from packBuffers, or a
// new one; the caller puts it back when done.
func packBuffer(n int) *[]float32 {
	if buf, ok := packBuffers.Get().(*[]float32); ok && cap(*buf) >= n {
		return buf
	}
	buf := make([]float32, n)
	return &buf
}

// gemmPanels is p.gemm of op(a) (m,k) and packPanels' bp (k,n), b not
// transposed, in gemmTiles' tiles (whose columns are whole panels), one
// kernel.Gemm call per panel of a tile.
func (p pool) gemmPanels(transA bool, m, n, k int, alpha float32, a []float32, lda int, bp []float32, beta float32, c []float32, ldc int) {
	rows, cols := gemmTiles(m, n)
	tn := chunks(n, cols)
	p.run(chunks(m, rows)*tn, func(t int) {
		i0, j0 := (t/tn)*rows, (t%tn)*cols
		mm := min(rows, m-i0)
		ao := i0 * lda
		if transA {
			ao = i0
		}
		for q := j0; q < min(n, j0+cols); q += panelCols {
			w := min(panelCols, n-q)
			kernel.Gemm(transA, false, mm, w, k, alpha, a[ao:], lda, bp[q*k:], w, beta, c[i0*ldc+q:], ldc)
		}
	})
}
