package model

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
