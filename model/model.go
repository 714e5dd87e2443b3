// Package model is InstructFlow's built-in GPT engine: a decoder-only GPT-2
// (token and position embeddings, pre-LayerNorm blocks of causal multi-head
// attention and a tanh-GELU MLP, a final LayerNorm, an LM head tied to the
// token embedding) that trains and samples on CPU.
//
// It is written the way llm.c is: all parameters live in one flat buffer
// (Model.Params, gradients in Model.Grads) viewed as named tensors, and each
// layer's forward sits beside its backward with tensor shapes in comments
// (layers.go). Matrix multiplies and the few other compute-bound loops go
// through package kernel (OpenBLAS and small C loops, or pure Go under the
// purego build tag, without cgo, or off amd64).
//
// One training step is: Forward a batch, read its Output (per-token
// log-probabilities of the targets, entropies, values), compute the loss
// outside the model and write dLoss/dOutput into a Grad, call Backward, then
// step an optimizer. SFT seeds only LogProbs (see CrossEntropy), the reward
// model seeds Values at each sequence's last token, PPO seeds all three.
//
// Work is split into fixed chunks that do not depend on the thread count, so
// the same seed on the same build and machine gives bit-identical weights on
// any number of threads.
package model

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
)

// Group says what a tensor belongs to.
type Group int

const (
	// Base tensors are GPT-2's own.
	Base Group = iota
	// LoRA tensors are the adapters.
	LoRA
	// Head tensors are the value head.
	Head
)

// Tensor is a named view into the model's flat parameter and gradient
// buffers. Shapes and names follow Hugging Face GPT-2; Conv1D weights are
// (in, out).
type Tensor struct {
	Name  string
	Shape []int
	Group Group
	Data  []float32 // a view into Model.Params
	Grad  []float32 // a view into Model.Grads
	// Trainable tensors get gradients and optimizer state; a frozen tensor's
	// gradient is never computed.
	Trainable bool
}

// Size returns the number of elements.
func (t *Tensor) Size() int { return len(t.Data) }

type block struct {
	ln1w, ln1b, ln2w, ln2b   *Tensor
	qkv, attProj, fc, fcProj linear
}

// Model is a GPT-2 with its parameters, gradients and the activations of the
// last Forward. A Model is not safe for concurrent use.
type Model struct {
	Config  Config
	Params  []float32 // every parameter, tensor after tensor
	Grads   []float32 // same layout as Params
	Tensors []*Tensor // in buffer order: Base, then LoRA, then Head

	byName     map[string]*Tensor
	wte, wpe   *Tensor
	lnfw, lnfb *Tensor
	vw, vb     *Tensor // nil without a value head
	blocks     []block
	pool       pool

	acts activations
}

// New returns a model of shape cfg with GPT-2's initialisation drawn from
// rng: weights N(0, 0.02), residual projections N(0, 0.02/sqrt(2*layers)),
// biases 0, LayerNorm weights 1; LoRA A uniform(+-1/sqrt(in)) and B 0 (so a
// fresh adapter changes nothing); a nil rng leaves weights at zero for a
// later LoadWeights. With LoRA, only adapters and heads are
// trainable; otherwise everything is. Threads default to GOMAXPROCS.
func New(cfg Config, rng *RNG) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, byName: map[string]*Tensor{}, pool: pool{threads: runtime.GOMAXPROCS(0)}}
	for _, ts := range cfg.Layout() {
		t := &Tensor{Name: ts.Name, Shape: ts.Shape, Group: ts.Group}
		m.Tensors = append(m.Tensors, t)
		m.byName[t.Name] = t
	}
	get := m.Tensor
	m.wte, m.wpe = get("transformer.wte.weight"), get("transformer.wpe.weight")
	m.blocks = make([]block, cfg.Layers)
	C := cfg.Width
	lin := func(prefix string, in, out int) linear {
		li := linear{w: get(prefix + ".weight"), b: get(prefix + ".bias"), C: in, OC: out}
		if cfg.LoRARank > 0 {
			li.loraA, li.loraB, li.scale = get(prefix+".lora_A.weight"), get(prefix+".lora_B.weight"), cfg.loraScale()
		}
		return li
	}
	for l := range m.blocks {
		p := "transformer.h." + strconv.Itoa(l) + "."
		bl := &m.blocks[l]
		bl.ln1w, bl.ln1b = get(p+"ln_1.weight"), get(p+"ln_1.bias")
		bl.qkv = lin(p+"attn.c_attn", C, 3*C)
		bl.attProj = lin(p+"attn.c_proj", C, C)
		bl.ln2w, bl.ln2b = get(p+"ln_2.weight"), get(p+"ln_2.bias")
		bl.fc = lin(p+"mlp.c_fc", C, 4*C)
		bl.fcProj = lin(p+"mlp.c_proj", 4*C, C)
	}
	m.lnfw, m.lnfb = get("transformer.ln_f.weight"), get("transformer.ln_f.bias")
	if cfg.ValueHead {
		m.vw, m.vb = get("v_head.summary.weight"), get("v_head.summary.bias")
	}
	n := 0
	for _, t := range m.Tensors {
		n += product(t.Shape)
	}
	m.Params, m.Grads = make([]float32, n), make([]float32, n)
	off := 0
	for _, t := range m.Tensors {
		sz := product(t.Shape)
		t.Data, t.Grad = m.Params[off:off+sz:off+sz], m.Grads[off:off+sz:off+sz]
		t.Trainable = cfg.LoRARank == 0 || t.Group != Base
		off += sz
	}
	m.init(rng)
	return m, nil
}

func (bl *block) linears() []*linear {
	return []*linear{&bl.qkv, &bl.attProj, &bl.fc, &bl.fcProj}
}

func product(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func (m *Model) init(rng *RNG) {
	proj := 0.02 / float32(math.Sqrt(float64(2*m.Config.Layers)))
	for _, t := range m.Tensors {
		switch {
		case isLNWeight(t.Name):
			for i := range t.Data {
				t.Data[i] = 1
			}
		case rng == nil || len(t.Shape) == 1 || strings.HasSuffix(t.Name, ".lora_B.weight"):
			// biases and LoRA B start at zero
		case strings.HasSuffix(t.Name, ".lora_A.weight"):
			bound := 1 / float32(math.Sqrt(float64(t.Shape[1])))
			for i := range t.Data {
				t.Data[i] = (2*rng.Float32() - 1) * bound
			}
		default:
			std := float32(0.02)
			if strings.HasSuffix(t.Name, "attn.c_proj.weight") || strings.HasSuffix(t.Name, "mlp.c_proj.weight") {
				std = proj
			}
			for i := range t.Data {
				t.Data[i] = std * rng.Norm()
			}
		}
	}
}

func isLNWeight(name string) bool {
	return strings.HasSuffix(name, "ln_1.weight") || strings.HasSuffix(name, "ln_2.weight") || strings.HasSuffix(name, "ln_f.weight")
}

// Tensor returns the tensor called name, or nil.
func (m *Model) Tensor(name string) *Tensor { return m.byName[name] }

// SetThreads sets how many goroutines share the work (at least 1). Results do
// not depend on it.
func (m *Model) SetThreads(n int) { m.pool.threads = max(1, n) }

// SetTrainable marks each tensor trainable when keep(t) is true, frozen
// otherwise. Make optimizers after freezing: they hold state for trainable
// tensors only.
func (m *Model) SetTrainable(keep func(t *Tensor) bool) {
	for _, t := range m.Tensors {
		t.Trainable = keep(t)
	}
}

// NumParams returns the number of parameters, and of trainable ones.
func (m *Model) NumParams() (total, trainable int) {
	for _, t := range m.Tensors {
		total += t.Size()
		if t.Trainable {
			trainable += t.Size()
		}
	}
	return total, trainable
}

// ZeroGrad sets every gradient to zero.
func (m *Model) ZeroGrad() { clear(m.Grads) }

// Batch is the input of Forward: B sequences of T tokens, row-major.
type Batch struct {
	B, T   int
	Tokens []int32 // (B,T)
	// Targets (B,T) are the tokens whose log-probabilities Forward reports,
	// usually Tokens shifted left by one; -1 marks a position without a
	// target. Nil skips the LM head (a reward model needs only values).
	Targets []int32
}

// Output is what Forward computes; its slices are owned by the model and
// valid until the next Forward (Logits until the next Backward).
type Output struct {
	Logits   []float32 // (B,T,V) the LM head's logits; nil without Targets
	LogProbs []float32 // (B,T) log p(Targets[b,t] | Tokens[b,:t+1]); nil without Targets
	Entropy  []float32 // (B,T) entropy of the next-token distribution; nil without Targets
	Values   []float32 // (B,T) the value head at every position; nil without a value head
}

// Grad holds dLoss/dOutput for Backward. A nil field means zero.
type Grad struct {
	LogProbs []float32 // (B,T)
	Entropy  []float32 // (B,T)
	Values   []float32 // (B,T)
}

// Forward runs the model on b and keeps what Backward needs.
func (m *Model) Forward(b Batch) (Output, error) {
	if err := m.checkBatch(b); err != nil {
		return Output{}, err
	}
	cfg := m.Config
	B, T, C, V, NH := b.B, b.T, cfg.Width, cfg.Vocab, cfg.Heads
	N := B * T
	a := &m.acts
	a.resize(m, B, T, b.Targets != nil)
	copy(a.tokens, b.Tokens)
	if b.Targets != nil {
		copy(a.targets, b.Targets)
	}
	p := m.pool

	encoderForward(a.enc, m.wte.Data, m.wpe.Data, a.tokens, B, T, C)
	res := a.enc
	for l := range m.blocks {
		bl, la := &m.blocks[l], &a.layers[l]
		layernormForward(p, la.ln1, la.ln1Mean, la.ln1Rstd, res, bl.ln1w.Data, bl.ln1b.Data, N, C)
		linearForward(p, la.qkv, la.u[0], la.ln1, &bl.qkv, nil, N, false)
		attentionForward(p, la.atty, la.att, la.qkv, B, T, C, NH)
		copy(la.res2, res)
		linearForward(p, la.res2, la.u[1], la.atty, &bl.attProj, nil, N, true)
		layernormForward(p, la.ln2, la.ln2Mean, la.ln2Rstd, la.res2, bl.ln2w.Data, bl.ln2b.Data, N, C)
		linearForward(p, la.fch, la.u[2], la.ln2, &bl.fc, nil, N, false)
		geluForward(p, la.fchGelu, la.fch, N*4*C)
		copy(la.res3, la.res2)
		linearForward(p, la.res3, la.u[3], la.fchGelu, &bl.fcProj, nil, N, true)
		res = la.res3
	}
	layernormForward(p, a.lnf, a.lnfMean, a.lnfRstd, res, m.lnfw.Data, m.lnfb.Data, N, C)

	var out Output
	if b.Targets != nil {
		lmHeadForward(p, a.logits, a.lse, a.logp, a.ent, a.headScratch, a.lnf, m.wte.Data, a.targets, N, V, C)
		out.Logits, out.LogProbs, out.Entropy = a.logits[:N*V], a.logp, a.ent
	}
	if m.vw != nil {
		valueForward(a.values, a.lnf, m.vw.Data, m.vb.Data[0], N, C)
		out.Values = a.values
	}
	a.ready = true
	return out, nil
}

func (m *Model) checkBatch(b Batch) error {
	cfg := m.Config
	if b.B <= 0 || b.T <= 0 {
		return fmt.Errorf("model: forward: batch shape (%d,%d) must be positive", b.B, b.T)
	}
	if b.T > cfg.Context {
		return fmt.Errorf("model: forward: sequence length %d exceeds context n_positions %d", b.T, cfg.Context)
	}
	if len(b.Tokens) != b.B*b.T {
		return fmt.Errorf("model: forward: %d tokens for batch shape (%d,%d)", len(b.Tokens), b.B, b.T)
	}
	if b.Targets != nil && len(b.Targets) != b.B*b.T {
		return fmt.Errorf("model: forward: %d targets for batch shape (%d,%d)", len(b.Targets), b.B, b.T)
	}
	for i, tok := range b.Tokens {
		if tok < 0 || int(tok) >= cfg.Vocab {
			return fmt.Errorf("model: forward: token %d at position %d is outside the vocabulary [0,%d)", tok, i, cfg.Vocab)
		}
	}
	for i, tok := range b.Targets {
		if tok < -1 || int(tok) >= cfg.Vocab {
			return fmt.Errorf("model: forward: target %d at position %d is outside the vocabulary [0,%d) and not -1", tok, i, cfg.Vocab)
		}
	}
	return nil
}

// Backward adds to Grads the gradients of the loss whose derivatives with
// respect to the last Forward's outputs are g. It may run once per Forward.
func (m *Model) Backward(g Grad) {
	a := &m.acts
	if !a.ready {
		panic("model: backward without a forward")
	}
	a.ready = false
	cfg := m.Config
	B, T, C, V, NH := a.B, a.T, cfg.Width, cfg.Vocab, cfg.Heads
	N := B * T
	for _, s := range []struct {
		name string
		v    []float32
		ok   bool
	}{{"LogProbs", g.LogProbs, a.hasTargets}, {"Entropy", g.Entropy, a.hasTargets}, {"Values", g.Values, m.vw != nil}} {
		if s.v != nil && (!s.ok || len(s.v) != N) {
			panic(fmt.Sprintf("model: backward: grad %s has %d elements for batch (%d,%d) (or the forward did not compute it)", s.name, len(s.v), B, T))
		}
	}
	p := m.pool
	grad := func(t *Tensor) []float32 {
		if t.Trainable {
			return t.Grad
		}
		return nil
	}

	dres := a.dres // (N,C): dLoss/d(residual stream), carried down the blocks
	clear(a.dlnf)
	if a.hasTargets && (g.LogProbs != nil || g.Entropy != nil) {
		lmHeadBackward(p, a.dlnf, grad(m.wte), a.logits, a.lse, a.ent, a.headScratch, g.LogProbs, g.Entropy, a.lnf, m.wte.Data, a.targets, N, V, C)
	}
	if g.Values != nil {
		valueBackward(a.dlnf, grad(m.vw), grad(m.vb), g.Values, a.lnf, m.vw.Data, N, C)
	}
	clear(dres)
	last := a.layers[len(m.blocks)-1].res3 // the final LayerNorm's input
	layernormBackward(p, dres, grad(m.lnfw), grad(m.lnfb), a.lnScratch, a.dlnf, last, m.lnfw.Data, a.lnfMean, a.lnfRstd, N, C)

	for l := len(m.blocks) - 1; l >= 0; l-- {
		bl, la := &m.blocks[l], &a.layers[l]
		inp := a.enc
		if l > 0 {
			inp = a.layers[l-1].res3
		}
		// MLP: dres holds dLoss/d(res3); the residual passes it on unchanged.
		linearBackward(p, a.dfch, a.du, a.ones, dres, la.fchGelu, la.u[3], &bl.fcProj, N)
		geluBackward(p, a.dfch, la.fch, N*4*C)
		linearBackward(p, a.dln, a.du, a.ones, a.dfch, la.ln2, la.u[2], &bl.fc, N)
		layernormBackward(p, dres, grad(bl.ln2w), grad(bl.ln2b), a.lnScratch, a.dln, la.res2, bl.ln2w.Data, la.ln2Mean, la.ln2Rstd, N, C)
		// attention: dres now holds dLoss/d(res2).
		linearBackward(p, a.dln, a.du, a.ones, dres, la.atty, la.u[1], &bl.attProj, N)
		attentionBackward(p, a.dqkv, a.datt, a.dln, la.att, la.qkv, B, T, C, NH)
		linearBackward(p, a.dln, a.du, a.ones, a.dqkv, la.ln1, la.u[0], &bl.qkv, N)
		layernormBackward(p, dres, grad(bl.ln1w), grad(bl.ln1b), a.lnScratch, a.dln, inp, bl.ln1w.Data, la.ln1Mean, la.ln1Rstd, N, C)
	}
	encoderBackward(grad(m.wte), grad(m.wpe), dres, a.tokens, B, T, C)
}
