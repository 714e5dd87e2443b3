//go:build cgo && amd64 && !purego

package kernel

/*
#cgo CFLAGS: -O3
#cgo LDFLAGS: -lm
#include "kernel.h"
*/
import "C"

func init() { C.kernel_init() }

// levels returns the vector levels this CPU can run: 0 plain, 1 AVX2+FMA,
// 2 AVX-512.
func levels() []int {
	var ls []int
	for l := range int(C.kernel_cpu_level()) + 1 {
		ls = append(ls, l)
	}
	return ls
}

func level() int { return int(C.kernel_level()) }

// setLevel makes the kernels use level l (one of levels()) until the next
// call. Not safe while kernels run.
func setLevel(l int) { C.kernel_set_level(C.int(l)) }

func gelu(out, inp []float32) {
	C.kernel_gelu_forward((*C.float)(&out[0]), (*C.float)(&inp[0]), C.long(len(out)))
}

func geluBackward(d, inp []float32) {
	C.kernel_gelu_backward((*C.float)(&d[0]), (*C.float)(&inp[0]), C.long(len(d)))
}

func attend(out, q, kt, v []float32, n, hs, ldk int, scale float32, scores []float32) {
	C.kernel_attend((*C.float)(&out[0]), (*C.float)(&q[0]), (*C.float)(&kt[0]), C.long(len(kt)), (*C.float)(&v[0]),
		C.long(n), C.long(hs), C.long(ldk), C.float(scale), (*C.float)(&scores[0]))
}

// thin computes a product whose b is not transposed in the register-tiled
// loop of the level; only for levels above generic.
func thin(transA bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta := 0
	if transA {
		ta = 1
	}
	if C.kernel_thin(C.long(m), C.long(n), C.long(k), C.float(alpha), (*C.float)(&a[0]), C.long(lda), C.int(ta),
		(*C.float)(&b[0]), C.long(ldb), C.float(beta), (*C.float)(&c[0]), C.long(ldc)) == 0 {
		panic("kernel: thin product on the generic level")
	}
}

func exps(dst, src []float32, shift, scale float32) (sum, wsum float32) {
	r := C.kernel_exps((*C.float)(&dst[0]), (*C.float)(&src[0]), C.long(len(src)), C.float(shift), C.float(scale))
	return float32(r.sum), float32(r.wsum)
}

func softmaxCausal(a []float32, t int) { C.kernel_softmax_causal((*C.float)(&a[0]), C.long(t)) }

func addRows(out, bias []float32, n, c int, accumulate bool) {
	acc := 0
	if accumulate {
		acc = 1
	}
	C.kernel_add_rows((*C.float)(&out[0]), (*C.float)(&bias[0]), C.long(n), C.long(c), C.int(acc))
}

func layerNorm(out, mean, rstd, inp, w, b []float32, n, c int, eps float32) {
	C.kernel_layernorm_forward((*C.float)(&out[0]), (*C.float)(&mean[0]), (*C.float)(&rstd[0]), (*C.float)(&inp[0]), (*C.float)(&w[0]), (*C.float)(&b[0]), C.long(n), C.long(c), C.float(eps))
}

func layerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, n, c int) {
	C.kernel_layernorm_backward((*C.float)(&dinp[0]), (*C.float)(&dw[0]), (*C.float)(&db[0]), (*C.float)(&dout[0]), (*C.float)(&inp[0]), (*C.float)(&w[0]), (*C.float)(&mean[0]), (*C.float)(&rstd[0]), C.long(n), C.long(c))
}
