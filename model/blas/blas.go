// Package blas is the engine's one matrix-multiply kernel: a row-major
// single-precision GEMM.
//
// The default build calls OpenBLAS through cgo (libopenblas-dev), pinned to one
// thread: the engine splits work into fixed chunks itself, so results do not
// depend on how many cores run them. Building with the noblas tag swaps in a
// pure-Go kernel with the same contract.
package blas

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
			panic(fmt.Sprintf("blas: gemm %s: %d elements for (%d,%d) with stride %d", name, len(s), rows, cols, ld))
		}
	}
	if k > 0 {
		need("a", a, ar, ac, lda)
		need("b", b, br, bc, ldb)
	}
	need("c", c, m, n, ldc)
}
