package model

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

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

// ReadWeights is LoadWeights from a stream: the header, then each tensor's
// bytes in file order straight into the model, so no copy of the file is
// held (a model exports and loads in about its own size). Every needed
// tensor's name, dtype, shape and byte range is checked before any is read;
// after an error reading the data itself the weights of the given groups
// are undefined. The reader is left after the last tensor read.
func (m *Model) ReadWeights(r io.Reader, groups ...Group) error {
	var n [8]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return fmt.Errorf("model: read weights: header length: %w", err)
	}
	hl, err := headerLen(n[:])
	if err != nil {
		return fmt.Errorf("model: read weights: %w", err)
	}
	hdr := make([]byte, hl)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return fmt.Errorf("model: read weights: header: %w", err)
	}
	entries, _, err := parseHeader(hdr)
	if err != nil {
		return fmt.Errorf("model: read weights: %w", err)
	}
	type part struct {
		t      *Tensor
		lo, hi int
	}
	var parts []part
	for _, t := range m.Tensors {
		if len(groups) > 0 && !slices.Contains(groups, t.Group) {
			continue
		}
		name := t.Name
		e, ok := entries[name]
		if !ok {
			name = strings.TrimPrefix(name, "transformer.")
			e, ok = entries[name]
		}
		if !ok {
			return fmt.Errorf("model: read weights: tensor %s is missing", t.Name)
		}
		if err := checkF32(stTensor{Name: name, DType: e.DType, Shape: e.Shape}, t.Shape); err != nil {
			return fmt.Errorf("model: read weights: %w", err)
		}
		parts = append(parts, part{t, e.Offsets[0], e.Offsets[1]})
	}
	slices.SortFunc(parts, func(a, b part) int { return a.lo - b.lo })
	pos := 0
	buf := make([]byte, 1<<20)
	for i, p := range parts {
		if i > 0 && p.lo < parts[i-1].hi {
			return fmt.Errorf("model: read weights: tensors %s and %s overlap", parts[i-1].t.Name, p.t.Name)
		}
		if _, err := io.CopyN(io.Discard, r, int64(p.lo-pos)); err != nil {
			return fmt.Errorf("model: read weights: %w", err)
		}
		for off := 0; off < len(p.t.Data); {
			k := min(len(buf)/4, len(p.t.Data)-off)
			if _, err := io.ReadFull(r, buf[:4*k]); err != nil {
				return fmt.Errorf("model: read weights: tensor %s: %w", p.t.Name, err)
			}
			for j := range k {
				p.t.Data[off+j] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*j:]))
			}
			off += k
		}
		pos = p.hi
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
