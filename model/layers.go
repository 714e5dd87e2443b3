package model

import (
	"math"

	"github.com/instructflow/instructflow/model/kernel"
)

// The layers, each forward beside its backward. N is the number of token rows
// (B*T), C the width, OC a projection's output width, V the vocabulary.
// Backward functions accumulate (+=) into parameter gradients and say in
// their comment whether they overwrite or accumulate the input gradient.

const lnEps = 1e-5

// elemChunk is the number of elements per task in elementwise layers.
const elemChunk = 16384

// encoderForward: out (N,C) = wte[tokens] (V,C) + wpe[t] (T,C), N = B*T.
func encoderForward(out, wte, wpe []float32, tokens []int32, B, T, C int) {
	for b := range B {
		for t := range T {
			n := b*T + t
			o, e, p := out[n*C:(n+1)*C], wte[int(tokens[n])*C:], wpe[t*C:]
			for i := range o {
				o[i] = e[i] + p[i]
			}
		}
	}
}

// encoderBackward: dwte (V,C) += scatter of dout (N,C) by token; dwpe (T,C) +=
// dout summed over the batch. A nil gradient is skipped (frozen).
func encoderBackward(dwte, dwpe, dout []float32, tokens []int32, B, T, C int) {
	for b := range B {
		for t := range T {
			n := b*T + t
			d := dout[n*C : (n+1)*C]
			if dwte != nil {
				axpy(dwte[int(tokens[n])*C:], d, 1)
			}
			if dwpe != nil {
				axpy(dwpe[t*C:], d, 1)
			}
		}
	}
}

// layernormForward: out (N,C) = (inp-mean)*rstd*w + b row by row, keeping
// mean (N) and rstd (N) for the backward.
func layernormForward(p pool, out, mean, rstd, inp, w, b []float32, N, C int) {
	p.run(chunks(N, rowChunk), func(c int) {
		n0, n1 := c*rowChunk, min(N, (c+1)*rowChunk)
		kernel.LayerNorm(out[n0*C:n1*C], mean[n0:n1], rstd[n0:n1], inp[n0*C:n1*C], w, b, n1-n0, C, lnEps)
	})
}

// layernormBackward: dinp (N,C) += the gradient through the normalisation;
// dw (C) and db (C) += their gradients unless nil. scratch holds
// chunks(N,rowChunk)*2*C floats: per-chunk partial sums, added in chunk order
// so the result does not depend on the thread count.
func layernormBackward(p pool, dinp, dw, db, scratch, dout, inp, w, mean, rstd []float32, N, C int) {
	nc := chunks(N, rowChunk)
	p.run(nc, func(c int) {
		part := scratch[c*2*C : (c+1)*2*C]
		clear(part)
		n0, n1 := c*rowChunk, min(N, (c+1)*rowChunk)
		kernel.LayerNormBackward(dinp[n0*C:n1*C], part[:C], part[C:], dout[n0*C:n1*C], inp[n0*C:n1*C], w, mean[n0:n1], rstd[n0:n1], n1-n0, C)
	})
	for c := range nc {
		part := scratch[c*2*C : (c+1)*2*C]
		if dw != nil {
			axpy(dw, part[:C], 1)
		}
		if db != nil {
			axpy(db, part[C:], 1)
		}
	}
}

// linear is a Conv1D projection, weight stored (C,OC) as Hugging Face does,
// with an optional LoRA adapter: A (r,C), B (OC,r).
type linear struct {
	w, b         *Tensor
	loraA, loraB *Tensor
	scale        float32 // LoRA alpha/r
	C, OC        int
}

// linearForward: out (N,OC) = inp (N,C) @ w (C,OC) + b (OC)
// [+ scale * u @ B^T, with u (N,r) = inp @ A^T kept for the backward].
// With accumulate, the result is added to out (a fused residual). panels,
// when not nil, is w packed by packPanels, which the product then reads.
func linearForward(p pool, out, u, inp []float32, l *linear, panels []float32, N int, accumulate bool) {
	C, OC := l.C, l.OC
	bias := l.b.Data
	p.run(chunks(N, rowChunk), func(c int) {
		n0, n1 := c*rowChunk, min(N, (c+1)*rowChunk)
		kernel.AddRows(out[n0*OC:n1*OC], bias, n1-n0, OC, accumulate)
	})
	if panels != nil {
		p.gemmPanels(false, N, OC, C, 1, inp, C, panels, 1, out, OC)
	} else {
		p.gemm(false, false, N, OC, C, 1, inp, C, l.w.Data, OC, 1, out, OC)
	}
	if l.loraA != nil {
		r := l.loraA.Shape[0]
		p.gemm(false, true, N, r, C, 1, inp, C, l.loraA.Data, C, 0, u, r)
		p.gemm(false, true, N, OC, r, l.scale, u, r, l.loraB.Data, r, 1, out, OC)
	}
}

// linearBackward: dinp (N,C) = dout (N,OC) @ w^T (overwritten; nil skips it),
// plus the adapter's share; dw (C,OC) += inp^T @ dout and db (OC) += dout
// summed over rows for trainable tensors; dA, dB likewise. du (N,r) is
// scratch; ones (N) holds 1s.
func linearBackward(p pool, dinp, du, ones, dout, inp, u []float32, l *linear, N int) {
	C, OC := l.C, l.OC
	if dinp != nil {
		p.gemm(false, true, N, C, OC, 1, dout, OC, l.w.Data, OC, 0, dinp, C)
	}
	if l.w.Trainable {
		p.gemm(true, false, C, OC, N, 1, inp, C, dout, OC, 1, l.w.Grad, OC)
	}
	if l.b.Trainable {
		// db (1,OC) += ones (1,N) @ dout (N,OC)
		p.gemm(false, false, 1, OC, N, 1, ones, N, dout, OC, 1, l.b.Grad, OC)
	}
	if l.loraA == nil {
		return
	}
	r := l.loraA.Shape[0]
	A, B := l.loraA, l.loraB
	p.gemm(false, false, N, r, OC, l.scale, dout, OC, B.Data, r, 0, du, r)
	if B.Trainable {
		p.gemm(true, false, OC, r, N, l.scale, dout, OC, u, r, 1, B.Grad, r)
	}
	if A.Trainable {
		p.gemm(true, false, r, C, N, 1, du, r, inp, C, 1, A.Grad, C)
	}
	if dinp != nil {
		p.gemm(false, false, N, C, r, 1, du, r, A.Data, C, 1, dinp, C)
	}
}

// attentionForward: causal multi-head self-attention.
// qkv (B,T,3C) holds q, k, v side by side; att (B,NH,T,T) keeps the softmax
// weights (zero above the diagonal); out (B,T,C).
func attentionForward(p pool, out, att, qkv []float32, B, T, C, NH int) {
	hs := C / NH
	scale := 1 / float32(math.Sqrt(float64(hs)))
	p.run(B*NH, func(bh int) {
		b, h := bh/NH, bh%NH
		q := qkv[b*T*3*C+h*hs:]
		a := att[bh*T*T : (bh+1)*T*T]
		// a (T,T) = scale * q (T,hs) @ k^T (hs,T)
		kernel.Gemm(false, true, T, T, hs, scale, q, 3*C, q[C:], 3*C, 0, a, T)
		kernel.SoftmaxCausal(a, T)
		// out (T,hs) = a (T,T) @ v (T,hs)
		kernel.Gemm(false, false, T, hs, T, 1, a, T, q[2*C:], 3*C, 0, out[b*T*C+h*hs:], C)
	})
}

// attentionBackward: dqkv (B,T,3C) = the gradient through attention of dout
// (B,T,C) (overwritten). datt (B,NH,T,T) is scratch.
func attentionBackward(p pool, dqkv, datt, dout, att, qkv []float32, B, T, C, NH int) {
	hs := C / NH
	scale := 1 / float32(math.Sqrt(float64(hs)))
	p.run(B*NH, func(bh int) {
		b, h := bh/NH, bh%NH
		off := b*T*3*C + h*hs
		q, dq := qkv[off:], dqkv[off:]
		do := dout[b*T*C+h*hs:]
		a, da := att[bh*T*T:(bh+1)*T*T], datt[bh*T*T:(bh+1)*T*T]
		// da (T,T) = do (T,hs) @ v^T; dv (T,hs) = a^T @ do
		kernel.Gemm(false, true, T, T, hs, 1, do, C, q[2*C:], 3*C, 0, da, T)
		kernel.Gemm(true, false, T, hs, T, 1, a, T, do, C, 0, dq[2*C:], 3*C)
		// through the softmax, into the scaled scores
		for t := range T {
			ar, dr := a[t*T:(t+1)*T], da[t*T:(t+1)*T]
			var dot float32
			for i := range t + 1 {
				dot += ar[i] * dr[i]
			}
			for i := range t + 1 {
				dr[i] = scale * ar[i] * (dr[i] - dot)
			}
			clear(dr[t+1:])
		}
		// dq (T,hs) = da @ k; dk (T,hs) = da^T @ q
		kernel.Gemm(false, false, T, hs, T, 1, da, T, q[C:], 3*C, 0, dq, 3*C)
		kernel.Gemm(true, false, T, hs, T, 1, da, T, q, 3*C, 0, dq[C:], 3*C)
	})
}

// geluForward: out (n) = gelu(inp (n)), tanh form.
func geluForward(p pool, out, inp []float32, n int) {
	p.run(chunks(n, elemChunk), func(c int) {
		lo, hi := c*elemChunk, min(n, (c+1)*elemChunk)
		kernel.Gelu(out[lo:hi], inp[lo:hi])
	})
}

// geluBackward: d (n) *= gelu'(inp (n)), in place.
func geluBackward(p pool, d, inp []float32, n int) {
	p.run(chunks(n, elemChunk), func(c int) {
		lo, hi := c*elemChunk, min(n, (c+1)*elemChunk)
		kernel.GeluBackward(d[lo:hi], inp[lo:hi])
	})
}

// lmHeadForward: logits (N,V) = lnf (N,C) @ wte^T, with the tied embedding
// wte (V,C). For each row n it keeps lse[n] = logsumexp(logits[n]) and
// writes logp[n] = log softmax(logits[n])[targets[n]] (0 where the target is
// -1) and ent[n] = the entropy of softmax(logits[n]). scratch holds
// chunks(N,rowChunk)*V floats.
func lmHeadForward(p pool, logits, lse, logp, ent, scratch, lnf, wte []float32, targets []int32, N, V, C int) {
	p.gemm(false, true, N, V, C, 1, lnf, C, wte, C, 0, logits, V)
	p.run(chunks(N, rowChunk), func(c int) {
		e := scratch[c*V : (c+1)*V]
		for n := c * rowChunk; n < min(N, (c+1)*rowChunk); n++ {
			z := logits[n*V : (n+1)*V]
			m := z[0]
			for _, v := range z[1:] {
				m = max(m, v)
			}
			// with s = sum(exp(z-m)): lse = m + log s, and
			// ent = -sum(p*log p) = log s - sum(exp(z-m)*(z-m))/s
			s, ws := kernel.Exps(e, z, m, 1)
			l := float32(math.Log(float64(s)))
			lse[n] = m + l
			ent[n] = l - ws/s
			logp[n] = 0
			if y := targets[n]; y >= 0 {
				logp[n] = z[y] - lse[n]
			}
		}
	})
}

// lmHeadBackward turns logits (N,V) into dlogits in place from the seeds
// dlogp (N) and dent (N) (either may be nil), then dlnf (N,C) = dlogits @ wte
// (overwritten) and dwte (V,C) += dlogits^T @ lnf unless dwte is nil.
// scratch is as for lmHeadForward.
//
// With p = softmax(z): dlogp/dz_i = [i==y] - p_i and
// dent/dz_i = -p_i*(log p_i + ent).
func lmHeadBackward(p pool, dlnf, dwte, logits, lse, ent, scratch, dlogp, dent, lnf, wte []float32, targets []int32, N, V, C int) {
	p.run(chunks(N, rowChunk), func(c int) {
		pr := scratch[c*V : (c+1)*V]
		for n := c * rowChunk; n < min(N, (c+1)*rowChunk); n++ {
			z := logits[n*V : (n+1)*V]
			var gl, ge float32
			if dlogp != nil && targets[n] >= 0 {
				gl = dlogp[n]
			}
			if dent != nil {
				ge = dent[n]
			}
			l, h := lse[n], ent[n]
			kernel.Exps(pr, z, l, 1)
			for i, v := range z {
				z[i] = -gl*pr[i] - ge*pr[i]*(v-l+h)
			}
			if gl != 0 {
				z[targets[n]] += gl
			}
		}
	})
	p.gemm(false, false, N, C, V, 1, logits, V, wte, C, 0, dlnf, C)
	if dwte != nil {
		p.gemm(true, false, V, C, N, 1, logits, V, lnf, C, 1, dwte, C)
	}
}

// valueForward: values (N) = lnf (N,C) @ w (C) + b.
func valueForward(values, lnf, w []float32, b float32, N, C int) {
	for n := range N {
		values[n] = dot(lnf[n*C:(n+1)*C], w) + b
	}
}

// valueBackward: dlnf (N,C) += dvalues (N) outer w (C); dw (C) and db (1) +=
// their gradients unless nil.
func valueBackward(dlnf, dw, db, dvalues, lnf, w []float32, N, C int) {
	for n, dv := range dvalues[:N] {
		if dv == 0 {
			continue
		}
		axpy(dlnf[n*C:(n+1)*C], w, dv)
		if dw != nil {
			axpy(dw, lnf[n*C:(n+1)*C], dv)
		}
		if db != nil {
			db[0] += dv
		}
	}
}
