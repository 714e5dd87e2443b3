package model

import "math"

// axpy computes y[:len(x)] += alpha*x.
func axpy(y, x []float32, alpha float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

// dot returns the inner product of x and y[:len(x)].
func dot(x, y []float32) float32 {
	y = y[:len(x)]
	var s float32
	for i, v := range x {
		s += v * y[i]
	}
	return s
}

// expf is a float32 exp (Cephes' range reduction and polynomial, about one
// ulp), several times faster than converting through math.Exp.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	if x < -87.33654 {
		return 0
	}
	n := float32(math.Floor(float64(x*log2e + 0.5)))
	x = x - n*c1 - n*c2
	z := x * x
	y := ((((1.9875691500e-4*x+1.3981999507e-3)*x+8.3334519073e-3)*x+4.1665795894e-2)*x+1.6666665459e-1)*x + 5.0000001201e-1
	y = y*z + x + 1
	return y * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// tanhf is tanh through expf.
func tanhf(x float32) float32 {
	return 1 - 2/(expf(2*x)+1)
}
