// Package kernel holds the engine's few compute-bound inner loops: a
// row-major single-precision GEMM, the tanh GELU, LayerNorm, one query's
// attention over a key/value cache, and a fused exp-and-sum for softmax.
//
// The default build uses cgo. GEMM calls OpenBLAS (libopenblas-dev) pinned to
// one thread, since the engine splits work into fixed chunks itself so that
// results do not depend on how many cores run them. Products whose
// right-hand matrix is not transposed go instead, where InPlace says, to a
// register-tiled C loop that reads its operands in place: OpenBLAS repacks
// both operands on every call, which dominates thin products (sampling's
// decode steps). The other kernels are small C loops the compiler
// vectorises (kernel.c, declared in kernel.h). All C loops are built for
// AVX-512, AVX2+FMA and plain x86-64, and the best the CPU supports is picked
// at start-up. Building with the purego tag, with cgo off (CGO_ENABLED=0,
// the default when cross-compiling) or for an architecture other than amd64
// swaps in pure Go with the same contracts and no cgo; Name says which kernel
// a build has.
//
// Every function runs on one thread and panics, naming the package, when its
// slices do not fit the shapes it is given.
package kernel

import "fmt"

// Gemm computes c = alpha*op(a)*op(b) + beta*c for row-major matrices, where
// op(x) is x or its transpose: op(a) is (m,k), op(b) is (k,n), c is (m,n).
// lda, ldb and ldc are the row strides of a, b and c as stored. When beta is
// 0, c is overwritten (its old contents, even NaN, are ignored).
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	check(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// InPlace reports whether Gemm computes a product of m rows whose b is not
// transposed (op(a) as transA says) with its own register-tiled loop, which
// reads the operands in place, rather than with BLAS or pure Go. On AVX-512
// it does so for every such product: OpenBLAS repacks both operands on
// every call, which costs a tenth to a third of a training product split
// into the engine's tiles. On AVX2, whose 16 registers hold a tile of 6 rows
// by 16 columns, only for the thin products it is built for (at most 64
// rows, a not transposed, such as a decode step's): OpenBLAS's packed
// kernels are faster on the larger ones. A caller that splits a product by
// a transposed b into tiles that run in place does better to transpose b
// once and pass it untransposed.
func InPlace(transA bool, m int) bool {
	switch level() {
	case 2:
		return true
	case 1:
		return !transA && m <= 64
	}
	return false
}

// check panics when a slice is too short for the shape it is said to hold, so
// a caller's mistake never reaches C code as an out-of-bounds access.
func check(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	need := func(name string, s []float32, rows, cols, ld int) {
		if m < 0 || n < 0 || k < 0 || ld < cols || (rows > 0 && len(s) < (rows-1)*ld+cols) {
			panic(fmt.Sprintf("kernel: gemm %s: %d elements for (%d,%d) with stride %d", name, len(s), rows, cols, ld))
		}
	}
	if k > 0 {
		need("a", a, ar, ac, lda)
		need("b", b, br, bc, ldb)
	}
	need("c", c, m, n, ldc)
}
