//go:build purego || !cgo || !amd64

package kernel

import "math"

func gelu(out, inp []float32) {
	for i, x := range inp {
		out[i] = x / (1 + Expf(-2*geluK*(x+0.044715*x*x*x)))
	}
}

func geluBackward(d, inp []float32) {
	for i, x := range inp {
		s := 1 / (1 + Expf(-2*geluK*(x+0.044715*x*x*x)))
		d[i] *= s + 2*x*s*(1-s)*geluK*(1+3*0.044715*x*x)
	}
}

func exps(dst, src []float32, shift, scale float32) (sum, wsum float32) {
	var acc, wacc [16]float32
	for i, v := range src {
		x := (v - shift) * scale
		e := Expf(x)
		dst[i] = e
		acc[i&15] += e
		wacc[i&15] += e * x
	}
	for l := range acc {
		sum += acc[l]
		wsum += wacc[l]
	}
	return sum, wsum
}

// levels and setLevel mirror the cgo build's test hooks: pure Go has one
// variant.
func levels() []int { return []int{0} }

func setLevel(int) {}

func level() int { return 0 }

func softmaxCausal(a []float32, t int) {
	for r := range t {
		row, n := a[r*t:(r+1)*t], r+1
		m := row[0]
		for _, v := range row[1:n] {
			m = max(m, v)
		}
		sum, _ := exps(row[:n], row[:n], m, 1)
		inv := 1 / sum
		for i := range row[:n] {
			row[i] *= inv
		}
		clear(row[n:])
	}
}

func addRows(out, bias []float32, n, c int, accumulate bool) {
	for r := range n {
		o := out[r*c : (r+1)*c]
		if !accumulate {
			copy(o, bias)
			continue
		}
		for i, b := range bias {
			o[i] += b
		}
	}
}

func layerNorm(out, mean, rstd, inp, w, b []float32, n, c int, eps float32) {
	for r := range n {
		x := inp[r*c : (r+1)*c]
		var m float32
		for _, v := range x {
			m += v
		}
		m /= float32(c)
		var v2 float32
		for _, v := range x {
			v2 += (v - m) * (v - m)
		}
		s := 1 / float32(math.Sqrt(float64(v2/float32(c)+eps)))
		o := out[r*c : (r+1)*c]
		for i, v := range x {
			o[i] = (v-m)*s*w[i] + b[i]
		}
		mean[r], rstd[r] = m, s
	}
}

func layerNormBackward(dinp, dw, db, dout, inp, w, mean, rstd []float32, n, c int) {
	for r := range n {
		x, d, di := inp[r*c:(r+1)*c], dout[r*c:(r+1)*c], dinp[r*c:(r+1)*c]
		m, s := mean[r], rstd[r]
		var dnormMean, dnormNormMean float32
		for i := range d {
			dn := w[i] * d[i]
			dnormMean += dn
			dnormNormMean += dn * (x[i] - m) * s
		}
		dnormMean /= float32(c)
		dnormNormMean /= float32(c)
		for i := range d {
			norm := (x[i] - m) * s
			di[i] += (w[i]*d[i] - dnormMean - norm*dnormNormMean) * s
			dw[i] += norm * d[i]
			db[i] += d[i]
		}
	}
}

func attend(out, q, kt, v []float32, n, hs, ldk int, scale float32, scores []float32) {
	sc := scores[:n]
	clear(sc)
	for d, x := range q[:hs] {
		axpy(sc, kt[d*ldk:d*ldk+n], x*scale)
	}
	m := sc[0]
	for _, s := range sc[1:] {
		m = max(m, s)
	}
	var sum float32
	for j, s := range sc {
		e := Expf(s - m)
		sc[j] = e
		sum += e
	}
	o := out[:hs]
	clear(o)
	inv := 1 / sum
	for j, e := range sc {
		axpy(o, v[j*hs:(j+1)*hs], e*inv)
	}
}
