package model

import (
	"fmt"
	"io"
	"slices"

	"github.com/instructflow/instructflow/model/kernel"
)

// WriteWeights writes the tensors of the given groups (all when none are
// given) as safetensors, with Hugging Face GPT-2 names and orientation. The
// tied LM head is not written, as Hugging Face does.
func (m *Model) WriteWeights(w io.Writer, groups ...Group) error {
	var ts []stTensor
	for _, t := range m.Tensors {
		if len(groups) == 0 || slices.Contains(groups, t.Group) {
			ts = append(ts, stTensor{Name: t.Name, DType: "F32", Shape: t.Shape, Data: f32Bytes(t.Data)})
		}
	}
	if err := writeSafetensors(w, ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("model: write weights: %w", err)
	}
	return nil
}

// LoadWeights reads a safetensors file into the tensors of the given groups
// (all when none are given). Each must be in the file, F32, with its exact
// shape; names may lack the "transformer." prefix (a GPT2Model file). Other
// tensors in the file (attention-mask buffers, lm_head.weight) are ignored.
// Nothing is changed when an error is returned.
func (m *Model) LoadWeights(data []byte, groups ...Group) error {
	file, _, err := parseSafetensors(data)
	if err != nil {
		return fmt.Errorf("model: load weights: %w", err)
	}
	var todo []*Tensor
	var src []stTensor
	for _, t := range m.Tensors {
		if len(groups) > 0 && !slices.Contains(groups, t.Group) {
			continue
		}
		st, ok := lookup(file, t.Name)
		if !ok {
			return fmt.Errorf("model: load weights: tensor %s is missing", t.Name)
		}
		if err := checkF32(st, t.Shape); err != nil {
			return fmt.Errorf("model: load weights: %w", err)
		}
		todo, src = append(todo, t), append(src, st)
	}
	for i, t := range todo {
		readF32(t.Data, src[i])
	}
	return nil
}

// Load builds a model from a config.json and a safetensors file holding all
// of its tensors.
func Load(configJSON, weights []byte) (*Model, error) {
	cfg, err := ParseConfig(configJSON)
	if err != nil {
		return nil, err
	}
	m, err := New(cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := m.LoadWeights(weights); err != nil {
		return nil, err
	}
	return m, nil
}

// MergeLoRA returns a copy of m without adapters whose base projections hold
// W + (alpha/r) * (B @ A)^T: the same function, cheaper to sample from and
// exportable as a plain GPT-2. Heads are copied.
func (m *Model) MergeLoRA() *Model {
	cfg := m.Config
	cfg.LoRARank, cfg.LoRAAlpha = 0, 0
	out, err := New(cfg, nil)
	if err != nil {
		panic("model: merge lora: " + err.Error()) // m's config was valid
	}
	out.pool = m.pool
	for _, t := range out.Tensors {
		copy(t.Data, m.byName[t.Name].Data)
	}
	if m.Config.LoRARank == 0 {
		return out
	}
	r := m.Config.LoRARank
	for l := range m.blocks {
		for i, li := range m.blocks[l].linears() {
			// w (C,OC) += scale * A^T (C,r) @ B^T (r,OC)
			dst := out.blocks[l].linears()[i].w.Data
			kernel.Gemm(true, true, li.C, li.OC, r, li.scale, li.loraA.Data, li.C, li.loraB.Data, r, 1, dst, li.OC)
		}
	}
	return out
}
