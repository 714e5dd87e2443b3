package model

import (
	"fmt"
	"io"
	"math"
	"strconv"
)

// AdamWConfig holds AdamW's hyperparameters; the learning rate is given to
// each Update.
type AdamWConfig struct {
	Beta1       float32 `json:"beta1"`
	Beta2       float32 `json:"beta2"`
	Eps         float32 `json:"eps"`
	WeightDecay float32 `json:"weight_decay"` // applied to matrices (rank >= 2) only, not to biases or LayerNorm
}

// DefaultAdamW is GPT-2's usual setting.
var DefaultAdamW = AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}

// AdamW is the optimizer of PyTorch's torch.optim.AdamW (decoupled weight
// decay, bias correction). It holds state only for the tensors that were
// trainable when it was made.
type AdamW struct {
	Config AdamWConfig
	Step   int // updates done

	tensors []*Tensor
	m, v    []float32 // first and second moments, tensor after tensor
	pool    pool
}

// NewAdamW returns an optimizer for model's trainable tensors.
func NewAdamW(model *Model, cfg AdamWConfig) *AdamW {
	o := &AdamW{Config: cfg, pool: model.pool}
	n := 0
	for _, t := range model.Tensors {
		if t.Trainable {
			o.tensors = append(o.tensors, t)
			n += t.Size()
		}
	}
	o.m, o.v = make([]float32, n), make([]float32, n)
	return o
}

// Update applies one step with learning rate lr to the tensors' Data from
// their Grad.
func (o *AdamW) Update(lr float32) {
	o.Step++
	c := o.Config
	bc1 := 1 - math.Pow(float64(c.Beta1), float64(o.Step))
	bc2 := 1 - math.Pow(float64(c.Beta2), float64(o.Step))
	stepSize := lr / float32(bc1)
	sqrtBC2 := float32(math.Sqrt(bc2))
	off := 0
	for _, t := range o.tensors {
		decay := float32(1)
		if len(t.Shape) >= 2 {
			decay = 1 - lr*c.WeightDecay
		}
		p, g := t.Data, t.Grad
		m, v := o.m[off:off+len(p)], o.v[off:off+len(p)]
		o.pool.run(chunks(len(p), elemChunk), func(k int) {
			for i := k * elemChunk; i < min(len(p), (k+1)*elemChunk); i++ {
				m[i] = c.Beta1*m[i] + (1-c.Beta1)*g[i]
				v[i] = c.Beta2*v[i] + (1-c.Beta2)*g[i]*g[i]
				denom := float32(math.Sqrt(float64(v[i])))/sqrtBC2 + c.Eps
				p[i] = p[i]*decay - stepSize*m[i]/denom
			}
		})
		off += len(p)
	}
}

// WriteState writes the moments and step as safetensors: exp_avg.NAME and
// exp_avg_sq.NAME per tensor, the step and hyperparameters as metadata.
func (o *AdamW) WriteState(w io.Writer) error {
	var ts []stTensor
	off := 0
	for _, t := range o.tensors {
		n := t.Size()
		ts = append(ts,
			stTensor{Name: "exp_avg." + t.Name, DType: "F32", Shape: t.Shape, Data: f32Bytes(o.m[off : off+n])},
			stTensor{Name: "exp_avg_sq." + t.Name, DType: "F32", Shape: t.Shape, Data: f32Bytes(o.v[off : off+n])})
		off += n
	}
	f := func(x float32) string { return strconv.FormatFloat(float64(x), 'g', -1, 32) }
	meta := map[string]string{"step": strconv.Itoa(o.Step), "beta1": f(o.Config.Beta1), "beta2": f(o.Config.Beta2),
		"eps": f(o.Config.Eps), "weight_decay": f(o.Config.WeightDecay)}
	if err := writeSafetensors(w, ts, meta); err != nil {
		return fmt.Errorf("model: write optimizer state: %w", err)
	}
	return nil
}

// LoadState restores what WriteState wrote. The file must hold state for
// exactly the optimizer's tensors, with their shapes; the step is restored,
// the hyperparameters stay those of o. Nothing changes on error.
func (o *AdamW) LoadState(data []byte) error {
	file, meta, err := parseSafetensors(data)
	if err != nil {
		return fmt.Errorf("model: load optimizer state: %w", err)
	}
	step, err := strconv.Atoi(meta["step"])
	if err != nil || step < 0 {
		return fmt.Errorf("model: load optimizer state: metadata step %q is not a step count", meta["step"])
	}
	if len(file) != 2*len(o.tensors) {
		return fmt.Errorf("model: load optimizer state: %d tensors, want %d (2 per trainable tensor): were other tensors trainable when it was saved?", len(file), 2*len(o.tensors))
	}
	var src []stTensor
	for _, t := range o.tensors {
		for _, prefix := range []string{"exp_avg.", "exp_avg_sq."} {
			st, ok := file[prefix+t.Name]
			if !ok {
				return fmt.Errorf("model: load optimizer state: tensor %s%s is missing", prefix, t.Name)
			}
			if err := checkF32(st, t.Shape); err != nil {
				return fmt.Errorf("model: load optimizer state: %w", err)
			}
			src = append(src, st)
		}
	}
	off := 0
	for i, t := range o.tensors {
		n := t.Size()
		readF32(o.m[off:off+n], src[2*i])
		readF32(o.v[off:off+n], src[2*i+1])
		off += n
	}
	o.Step = step
	return nil
}

// ClipGradNorm scales the trainable tensors' gradients so that their global
// L2 norm is at most maxNorm, and returns the norm before clipping. The sum
// is taken in fixed chunks, in order, so it does not depend on the thread
// count.
func (m *Model) ClipGradNorm(maxNorm float32) float32 {
	var sum float64
	var partial []float64
	for _, t := range m.Tensors {
		if !t.Trainable {
			continue
		}
		g := t.Grad
		partial = grow(partial, chunks(len(g), elemChunk))
		m.pool.run(len(partial), func(k int) {
			var s float64
			for _, v := range g[k*elemChunk : min(len(g), (k+1)*elemChunk)] {
				s += float64(v) * float64(v)
			}
			partial[k] = s
		})
		for _, s := range partial {
			sum += s
		}
	}
	norm := float32(math.Sqrt(sum))
	if norm > maxNorm && norm > 0 {
		scale := maxNorm / norm
		for _, t := range m.Tensors {
			if t.Trainable {
				for i := range t.Grad {
					t.Grad[i] *= scale
				}
			}
		}
	}
	return norm
}

// CosineLR is the learning rate at step (counted from 0): linear warmup to
// maxLR over warmup steps, then a cosine decay to minLR at step total, and
// minLR after.
func CosineLR(step, warmup, total int, maxLR, minLR float32) float32 {
	if step < warmup {
		return maxLR * float32(step+1) / float32(warmup)
	}
	if step >= total {
		return minLR
	}
	ratio := float64(step-warmup) / float64(max(1, total-warmup))
	return minLR + float32(0.5*(1+math.Cos(math.Pi*ratio)))*(maxLR-minLR)
}
