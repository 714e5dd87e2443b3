package kernel

import "fmt"

// LayerNorm normalises the n rows of inp (n,c): out = (x-mean)*rstd*w + b
// with rstd = 1/sqrt(var+eps), and writes mean (n) and rstd (n).
func LayerNorm(out, mean, rstd, inp, w, b []float32, n, c int, eps float32) {
	if len(out) < n*c || len(inp) < n*c || len(mean) < n || len(rstd) < n || len(w) < c || len(b) < c {
		panic(fmt.Sprintf("kernel: layernorm: slices too short for (%d,%d)", n, c))
	}
	if n > 0 {
		layerNorm(out, mean, rstd, inp, w, b, n, c, eps)
	}
}

// LayerNormBackward adds to dinp (n,c) the gradient through LayerNorm of
// dout (n,c), and to dw (c) and db (c) the weight and bias gradients of these
// rows.
func LayerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, n, c int) {
	if len(dinp) < n*c || len(dout) < n*c || len(inp) < n*c || len(mean) < n || len(rstd) < n ||
		len(w) < c || len(dw) < c || len(db) < c {
		panic(fmt.Sprintf("kernel: layernorm backward: slices too short for (%d,%d)", n, c))
	}
	if n > 0 {
		layerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd, n, c)
	}
}
