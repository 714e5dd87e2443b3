package model

// activations holds what Forward keeps for Backward, and Backward's scratch.
// Buffers grow to the largest batch seen and are then reused.
type activations struct {
	B, T       int
	hasTargets bool
	ready      bool // a Forward has run and its Backward has not

	tokens, targets []int32
	enc             []float32 // (N,C) embeddings: the residual stream entering block 0
	layers          []layerActs
	lnf             []float32 // (N,C)
	lnfMean         []float32 // (N)
	lnfRstd         []float32 // (N)
	logits          []float32 // (N,V); Backward turns it into dlogits
	lse             []float32 // (N) logsumexp of each logits row
	headScratch     []float32 // (chunks(N),V)
	logp, ent       []float32 // (N)
	values          []float32 // (N)

	// Backward scratch, shared by all blocks.
	dres, dln, dlnf []float32 // (N,C)
	dqkv            []float32 // (N,3C)
	datt            []float32 // (B,NH,T,T)
	dfch            []float32 // (N,4C)
	du              []float32 // (N,r)
	lnScratch       []float32 // (chunks(N),2C)
	ones            []float32 // (N) all 1: bias gradients are ones @ dout
}

type layerActs struct {
	ln1, ln1Mean, ln1Rstd []float32 // (N,C), (N), (N)
	qkv                   []float32 // (N,3C)
	att                   []float32 // (B,NH,T,T) softmax weights
	atty                  []float32 // (N,C) attention output before c_proj
	res2                  []float32 // (N,C) residual after attention
	ln2, ln2Mean, ln2Rstd []float32
	fch, fchGelu          []float32    // (N,4C)
	res3                  []float32    // (N,C) residual after the MLP: the block's output
	u                     [4][]float32 // (N,r) LoRA inputs of c_attn, attn.c_proj, c_fc, mlp.c_proj
}

// grow returns s resized to n, reusing its memory when it is large enough.
func grow[E any](s []E, n int) []E {
	if cap(s) < n {
		return make([]E, n)
	}
	return s[:n]
}

func (a *activations) resize(m *Model, B, T int, targets bool) {
	cfg := m.Config
	C, V, NH, r := cfg.Width, cfg.Vocab, cfg.Heads, cfg.LoRARank
	N := B * T
	a.B, a.T, a.hasTargets = B, T, targets
	a.tokens = grow(a.tokens, N)
	a.targets = grow(a.targets, N)
	a.enc = grow(a.enc, N*C)
	if len(a.layers) != cfg.Layers {
		a.layers = make([]layerActs, cfg.Layers)
	}
	for l := range a.layers {
		la := &a.layers[l]
		la.ln1, la.ln1Mean, la.ln1Rstd = grow(la.ln1, N*C), grow(la.ln1Mean, N), grow(la.ln1Rstd, N)
		la.qkv = grow(la.qkv, N*3*C)
		la.att = grow(la.att, B*NH*T*T)
		la.atty, la.res2 = grow(la.atty, N*C), grow(la.res2, N*C)
		la.ln2, la.ln2Mean, la.ln2Rstd = grow(la.ln2, N*C), grow(la.ln2Mean, N), grow(la.ln2Rstd, N)
		la.fch, la.fchGelu = grow(la.fch, N*4*C), grow(la.fchGelu, N*4*C)
		la.res3 = grow(la.res3, N*C)
		for i := range la.u {
			la.u[i] = grow(la.u[i], N*r)
		}
	}
	a.lnf, a.lnfMean, a.lnfRstd = grow(a.lnf, N*C), grow(a.lnfMean, N), grow(a.lnfRstd, N)
	if targets {
		a.logits = grow(a.logits, N*V)
		a.lse, a.logp, a.ent = grow(a.lse, N), grow(a.logp, N), grow(a.ent, N)
		a.headScratch = grow(a.headScratch, chunks(N, rowChunk)*V)
	}
	a.values = grow(a.values, N)
	a.dres, a.dln, a.dlnf = grow(a.dres, N*C), grow(a.dln, N*C), grow(a.dlnf, N*C)
	a.dqkv = grow(a.dqkv, N*3*C)
	a.datt = grow(a.datt, B*NH*T*T)
	a.dfch = grow(a.dfch, N*4*C)
	a.du = grow(a.du, N*r)
	a.lnScratch = grow(a.lnScratch, chunks(N, rowChunk)*2*C)
	if len(a.ones) < N {
		a.ones = make([]float32, N)
		for i := range a.ones {
			a.ones[i] = 1
		}
	}
}
