//go:build purego || !cgo || !amd64

package kernel

// Name says which kernel this build uses.
const Name = "go"

// BLASCore is empty: this build has no BLAS.
func BLASCore() string { return "" }

// BLASAdvice is empty: there is no BLAS to set up.
func BLASAdvice() string { return "" }

func gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	for i := range m {
		crow := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(crow)
		} else if beta != 1 {
			for j := range crow {
				crow[j] *= beta
			}
		}
	}
	switch {
	case !transA && !transB:
		// c[i,:] += alpha * a[i,p] * b[p,:]
		for i := range m {
			crow := c[i*ldc : i*ldc+n]
			arow := a[i*lda : i*lda+k]
			for p, av := range arow {
				axpy(crow, b[p*ldb:p*ldb+n], alpha*av)
			}
		}
	case !transA && transB:
		// c[i,j] += alpha * dot(a[i,:], b[j,:])
		for i := range m {
			crow := c[i*ldc : i*ldc+n]
			arow := a[i*lda : i*lda+k]
			for j := range crow {
				crow[j] += alpha * dot(arow, b[j*ldb:j*ldb+k])
			}
		}
	case transA && !transB:
		// c[i,:] += alpha * a[p,i] * b[p,:]
		for p := range k {
			brow := b[p*ldb : p*ldb+n]
			for i := range m {
				axpy(c[i*ldc:i*ldc+n], brow, alpha*a[p*lda+i])
			}
		}
	default:
		// c[i,j] += alpha * sum_p a[p,i] * b[j,p]
		for i := range m {
			crow := c[i*ldc : i*ldc+n]
			for j := range crow {
				var s float32
				brow := b[j*ldb : j*ldb+k]
				for p, bv := range brow {
					s += a[p*lda+i] * bv
				}
				crow[j] += alpha * s
			}
		}
	}
}

// axpy computes y += alpha*x.
func axpy(y, x []float32, alpha float32) {
	x = x[:len(y)]
	i := 0
	for ; i+4 <= len(y); i += 4 {
		y[i] += alpha * x[i]
		y[i+1] += alpha * x[i+1]
		y[i+2] += alpha * x[i+2]
		y[i+3] += alpha * x[i+3]
	}
	for ; i < len(y); i++ {
		y[i] += alpha * x[i]
	}
}

// dot returns the inner product of x and y, accumulated in four lanes.
func dot(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}
