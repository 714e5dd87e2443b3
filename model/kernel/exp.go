package kernel

import (
	"fmt"
	"math"
)

// Expf is exp in float32 (Cephes' range reduction and polynomial, within
// about two ulp; inputs below -87.3 give the smallest normal float, above 88
// about 1.65e38), several times faster than going through math.Exp.
func Expf(x float32) float32 {
	x = max(-87.33654, min(88, x))
	t := x*1.44269504088896341 + 12582912 // round(x*log2(e)) in t's low bits
	n := t - 12582912
	r := x - n*0.693359375 - n*-2.12194440e-4
	y := ((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r + 5.0000001201e-1
	y = y*r*r + r + 1
	return y * math.Float32frombits((math.Float32bits(t)-0x4B400000+127)<<23)
}

// Exps sets dst[i] = exp(x_i) for x_i = (src[i]-shift)*scale and returns
// sum(dst) and sum(dst[i]*x_i): softmax's normaliser and, divided by it, the
// mean of x under softmax (what entropy needs).
func Exps(dst, src []float32, shift, scale float32) (sum, wsum float32) {
	if len(dst) != len(src) {
		panic(fmt.Sprintf("kernel: exps: %d outputs for %d inputs", len(dst), len(src)))
	}
	if len(src) == 0 {
		return 0, 0
	}
	return exps(dst, src, shift, scale)
}

// SoftmaxCausal turns each row r of a (t,t) into the softmax of its first
// r+1 entries and zeroes the rest: causal attention weights, one call per
// head.
func SoftmaxCausal(a []float32, t int) {
	if t < 1 || len(a) < t*t {
		panic(fmt.Sprintf("kernel: softmax causal: %d floats for (%d,%d)", len(a), t, t))
	}
	softmaxCausal(a, t)
}

// AddRows sets each of the n rows of c floats in out to bias, or adds bias
// to them when accumulate is set.
func AddRows(out, bias []float32, n, c int, accumulate bool) {
	if n < 1 || c < 1 || len(out) < n*c || len(bias) < c {
		panic(fmt.Sprintf("kernel: add rows: %d floats for (%d,%d), bias %d", len(out), n, c, len(bias)))
	}
	addRows(out, bias, n, c, accumulate)
}
