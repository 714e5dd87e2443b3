package model

import "strconv"

// A model's layout: the tensors New makes, in their order, and the header
// WriteWeights writes before their data. Package hf streams weights in the
// engine's own byte layout with them, without building a Model.

// TensorSpec names one tensor of a model and gives its shape.
type TensorSpec struct {
	Name  string
	Group Group
	Shape []int
}

// Layout returns the tensors a model of shape c has, in the order New makes
// them (and WriteWeights writes them), without allocating them.
func (c Config) Layout() []TensorSpec {
	C := c.Width
	var ts []TensorSpec
	add := func(name string, g Group, shape ...int) { ts = append(ts, TensorSpec{name, g, shape}) }
	add("transformer.wte.weight", Base, c.Vocab, C)
	add("transformer.wpe.weight", Base, c.Context, C)
	type proj struct {
		name    string
		in, out int
	}
	projs := func(p string) []proj {
		return []proj{{p + "attn.c_attn", C, 3 * C}, {p + "attn.c_proj", C, C}, {p + "mlp.c_fc", C, 4 * C}, {p + "mlp.c_proj", 4 * C, C}}
	}
	for l := range c.Layers {
		p := "transformer.h." + strconv.Itoa(l) + "."
		pr := projs(p)
		add(p+"ln_1.weight", Base, C)
		add(p+"ln_1.bias", Base, C)
		for i, q := range pr {
			if i == 2 {
				add(p+"ln_2.weight", Base, C)
				add(p+"ln_2.bias", Base, C)
			}
			add(q.name+".weight", Base, q.in, q.out)
			add(q.name+".bias", Base, q.out)
		}
	}
	add("transformer.ln_f.weight", Base, C)
	add("transformer.ln_f.bias", Base, C)
	if r := c.LoRARank; r > 0 {
		for l := range c.Layers {
			for _, q := range projs("transformer.h." + strconv.Itoa(l) + ".") {
				add(q.name+".lora_A.weight", LoRA, r, q.in)
				add(q.name+".lora_B.weight", LoRA, q.out, r)
			}
		}
	}
	if c.ValueHead {
		add("v_head.summary.weight", Head, 1, C)
		add("v_head.summary.bias", Head, 1)
	}
	return ts
}

// F32Header returns the start of the F32 safetensors file WriteWeights
// writes for tensors of these names and shapes, in this order: the 8-byte
// header length and the padded JSON header, metadata included. The tensors'
// little-endian float32 data follow it, in the same order, to make the whole
// file.
func F32Header(ts []TensorSpec) []byte {
	st := make([]stTensor, len(ts))
	for i, t := range ts {
		st[i] = stTensor{Name: t.Name, DType: "F32", Shape: t.Shape}
	}
	return stHeader(st, func(t stTensor) int { return 4 * product(t.Shape) }, map[string]string{"format": "pt"})
}

// F32Size is the byte size of the file F32Header begins.
func F32Size(ts []TensorSpec) int64 {
	n := int64(len(F32Header(ts)))
	for _, t := range ts {
		n += 4 * int64(product(t.Shape))
	}
	return n
}
