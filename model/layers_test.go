package model

import (
	"math"
	"testing"
)

// randn returns n normal numbers scaled by std.
func randn(rng *RNG, n int, std float32) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = std * rng.Norm()
	}
	return s
}

// weighted returns sum(out*r) in float64: the scalar loss whose gradient
// with respect to out is r.
func weighted(out, r []float32) float64 {
	var s float64
	for i := range out {
		s += float64(out[i]) * float64(r[i])
	}
	return s
}

// checkGrad compares the analytic gradient g of loss at x with central finite
// differences, on every element (or every stride-th for large inputs).
func checkGrad(t *testing.T, name string, x, g []float32, loss func() float64) {
	t.Helper()
	const eps = 1e-2
	stride := max(1, len(x)/64)
	for i := 0; i < len(x); i += stride {
		orig := x[i]
		x[i] = orig + eps
		lp := loss()
		x[i] = orig - eps
		lm := loss()
		x[i] = orig
		num := (lp - lm) / (2 * eps)
		if d := math.Abs(num - float64(g[i])); d > 2e-3+2e-2*math.Abs(num) {
			t.Errorf("%s[%d]: analytic %.6g, numeric %.6g", name, i, g[i], num)
			return
		}
	}
}

func TestLayerGradients(t *testing.T) {
	const B, T, C, NH, V = 2, 5, 8, 2, 11
	N := B * T
	p := pool{threads: 2}
	rng := NewRNG(7)

	t.Run("layernorm", func(t *testing.T) {
		inp, w, b := randn(rng, N*C, 1), randn(rng, C, 1), randn(rng, C, 1)
		r := randn(rng, N*C, 1)
		out, mean, rstd := make([]float32, N*C), make([]float32, N), make([]float32, N)
		loss := func() float64 {
			layernormForward(p, out, mean, rstd, inp, w, b, N, C)
			return weighted(out, r)
		}
		loss()
		dinp, dw, db := make([]float32, N*C), make([]float32, C), make([]float32, C)
		layernormBackward(p, dinp, dw, db, make([]float32, chunks(N, rowChunk)*2*C), r, inp, w, mean, rstd, N, C)
		checkGrad(t, "inp", inp, dinp, loss)
		checkGrad(t, "w", w, dw, loss)
		checkGrad(t, "b", b, db, loss)
	})

	for _, tc := range []struct {
		name       string
		rank       int
		accumulate bool
	}{{"linear", 0, false}, {"linear accumulate", 0, true}, {"linear lora", 3, false}} {
		t.Run(tc.name, func(t *testing.T) {
			const OC = 12
			l := &linear{C: C, OC: OC, scale: 1.5,
				w: &Tensor{Data: randn(rng, C*OC, 0.5), Grad: make([]float32, C*OC), Trainable: true},
				b: &Tensor{Data: randn(rng, OC, 0.5), Grad: make([]float32, OC), Trainable: true}}
			if tc.rank > 0 {
				l.loraA = &Tensor{Shape: []int{tc.rank, C}, Data: randn(rng, tc.rank*C, 0.5), Grad: make([]float32, tc.rank*C), Trainable: true}
				l.loraB = &Tensor{Shape: []int{OC, tc.rank}, Data: randn(rng, OC*tc.rank, 0.5), Grad: make([]float32, OC*tc.rank), Trainable: true}
			}
			inp, r, base := randn(rng, N*C, 1), randn(rng, N*OC, 1), randn(rng, N*OC, 1)
			out, u := make([]float32, N*OC), make([]float32, N*tc.rank)
			loss := func() float64 {
				copy(out, base)
				linearForward(p, out, u, inp, l, nil, N, tc.accumulate)
				return weighted(out, r)
			}
			loss()
			dinp := make([]float32, N*C)
			ones := make([]float32, N)
			for i := range ones {
				ones[i] = 1
			}
			linearBackward(p, dinp, make([]float32, N*tc.rank), ones, r, inp, u, l, N)
			checkGrad(t, "inp", inp, dinp, loss)
			checkGrad(t, "w", l.w.Data, l.w.Grad, loss)
			checkGrad(t, "b", l.b.Data, l.b.Grad, loss)
			if tc.rank > 0 {
				checkGrad(t, "lora_A", l.loraA.Data, l.loraA.Grad, loss)
				checkGrad(t, "lora_B", l.loraB.Data, l.loraB.Grad, loss)
			}
		})
	}

	t.Run("attention", func(t *testing.T) {
		qkv, r := randn(rng, N*3*C, 1), randn(rng, N*C, 1)
		out, att := make([]float32, N*C), make([]float32, B*NH*T*T)
		loss := func() float64 {
			attentionForward(p, out, att, qkv, B, T, C, NH)
			return weighted(out, r)
		}
		loss()
		dqkv := make([]float32, N*3*C)
		attentionBackward(p, dqkv, make([]float32, B*NH*T*T), r, att, qkv, B, T, C, NH)
		checkGrad(t, "qkv", qkv, dqkv, loss)
	})

	t.Run("gelu", func(t *testing.T) {
		inp, r := randn(rng, N*C, 2), randn(rng, N*C, 1)
		out := make([]float32, N*C)
		loss := func() float64 {
			geluForward(p, out, inp, N*C)
			return weighted(out, r)
		}
		loss()
		d := append([]float32(nil), r...)
		geluBackward(p, d, inp, N*C)
		checkGrad(t, "inp", inp, d, loss)
	})

	t.Run("lm head", func(t *testing.T) {
		lnf, wte := randn(rng, N*C, 1), randn(rng, V*C, 0.5)
		targets := make([]int32, N)
		for i := range targets {
			targets[i] = int32(rng.IntN(V))
		}
		targets[3] = -1
		rl, re := randn(rng, N, 1), randn(rng, N, 1)
		logits, lse, logp, ent := make([]float32, N*V), make([]float32, N), make([]float32, N), make([]float32, N)
		scratch := make([]float32, chunks(N, rowChunk)*V)
		loss := func() float64 {
			lmHeadForward(p, logits, lse, logp, ent, scratch, lnf, wte, targets, N, V, C)
			return weighted(logp, rl) + weighted(ent, re)
		}
		loss()
		dlnf, dwte := make([]float32, N*C), make([]float32, V*C)
		lmHeadBackward(p, dlnf, dwte, logits, lse, ent, scratch, rl, re, lnf, wte, targets, N, V, C)
		checkGrad(t, "lnf", lnf, dlnf, loss)
		checkGrad(t, "wte", wte, dwte, loss)
	})

	t.Run("value head", func(t *testing.T) {
		lnf, w, b, r := randn(rng, N*C, 1), randn(rng, C, 1), randn(rng, 1, 1), randn(rng, N, 1)
		values := make([]float32, N)
		loss := func() float64 {
			valueForward(values, lnf, w, b[0], N, C)
			return weighted(values, r)
		}
		loss()
		dlnf, dw, db := make([]float32, N*C), make([]float32, C), make([]float32, 1)
		valueBackward(dlnf, dw, db, r, lnf, w, N, C)
		checkGrad(t, "lnf", lnf, dlnf, loss)
		checkGrad(t, "w", w, dw, loss)
		checkGrad(t, "b", b, db, loss)
	})

	t.Run("encoder", func(t *testing.T) {
		wte, wpe, r := randn(rng, V*C, 1), randn(rng, T*C, 1), randn(rng, N*C, 1)
		tokens := []int32{1, 4, 4, 0, 10, 3, 3, 2, 1, 9}
		out := make([]float32, N*C)
		loss := func() float64 {
			encoderForward(out, wte, wpe, tokens, B, T, C)
			return weighted(out, r)
		}
		dwte, dwpe := make([]float32, V*C), make([]float32, T*C)
		encoderBackward(dwte, dwpe, r, tokens, B, T, C)
		checkGrad(t, "wte", wte, dwte, loss)
		checkGrad(t, "wpe", wpe, dwpe, loss)
	})
}
