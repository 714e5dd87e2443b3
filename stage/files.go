package stage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/instructflow/instructflow/model"
)

// ModelFiles returns a model's checkpoint files: <prefix>config.json,
// <prefix>model.safetensors (Hugging Face GPT-2 names) and, with an
// optimizer, <prefix>optimizer.safetensors (moments and step).
func ModelFiles(prefix string, m *model.Model, opt *model.AdamW) ([]File, error) {
	cfg, err := model.MarshalConfig(m.Config)
	if err != nil {
		return nil, err
	}
	var w bytes.Buffer
	if err := m.WriteWeights(&w); err != nil {
		return nil, err
	}
	files := []File{{Name: prefix + "config.json", Data: cfg}, {Name: prefix + "model.safetensors", Data: w.Bytes()}}
	if opt != nil {
		var o bytes.Buffer
		if err := opt.WriteState(&o); err != nil {
			return nil, err
		}
		files = append(files, File{Name: prefix + "optimizer.safetensors", Data: o.Bytes()})
	}
	return files, nil
}

// LoadModel builds the model stored by ModelFiles under prefix.
func LoadModel(files map[string][]byte, prefix string) (*model.Model, error) {
	cfg, ok := files[prefix+"config.json"]
	if !ok {
		return nil, fmt.Errorf("stage: checkpoint has no %sconfig.json", prefix)
	}
	w, ok := files[prefix+"model.safetensors"]
	if !ok {
		return nil, fmt.Errorf("stage: checkpoint has no %smodel.safetensors", prefix)
	}
	return model.Load(cfg, w)
}

// LoadOptimizer restores the optimizer state stored under prefix into opt.
func LoadOptimizer(files map[string][]byte, prefix string, opt *model.AdamW) error {
	data, ok := files[prefix+"optimizer.safetensors"]
	if !ok {
		return fmt.Errorf("stage: checkpoint has no %soptimizer.safetensors", prefix)
	}
	return opt.LoadState(data)
}

// StateFile encodes a trainer's resumable state as state.json.
func StateFile(state any) (File, error) {
	b, err := json.MarshalIndent(state, "", "  ")
	if err != nil {
		return File{}, fmt.Errorf("stage: encode state: %w", err)
	}
	return File{Name: "state.json", Data: b}, nil
}

// ReadState decodes state.json into state.
func ReadState(files map[string][]byte, state any) error {
	b, ok := files["state.json"]
	if !ok {
		return fmt.Errorf("stage: checkpoint has no state.json")
	}
	if err := json.Unmarshal(b, state); err != nil {
		return fmt.Errorf("stage: decode state.json: %w", err)
	}
	return nil
}

// CheckShape refuses a checkpoint whose model does not have the expected
// shape (a checkpoint of another run or stage in the same place).
func CheckShape(got, want model.Config, what string) error {
	g, w := got, want
	g.ValueHead, w.ValueHead = false, false
	if g != w {
		return BadInput("%s has model shape %+v, but this stage expects %+v; it belongs to another run or stage: use a fresh checkpoint location", what, got, want)
	}
	return nil
}

// CheckStage refuses a checkpoint written by another stage.
func CheckStage(got, want string) error {
	if got != want {
		return BadInput("the latest checkpoint was written by stage %q, not %q: use a fresh checkpoint location", got, want)
	}
	return nil
}

// Resume loads what a one-model trainer saved with Save: the model, its
// optimizer (made by newOpt, then given the saved moments and step) and
// state.json into state.
func Resume(files map[string][]byte, newOpt func(*model.Model) *model.AdamW, state any) (*model.Model, *model.AdamW, error) {
	m, err := LoadModel(files, "")
	if err != nil {
		return nil, nil, err
	}
	opt := newOpt(m)
	if err := LoadOptimizer(files, "", opt); err != nil {
		return nil, nil, err
	}
	if err := ReadState(files, state); err != nil {
		return nil, nil, err
	}
	return m, opt, nil
}

// Save commits a one-model trainer's checkpoint at step: the model, its
// optimizer and state.json.
func Save(ctx context.Context, sink Sink, step int64, m *model.Model, opt *model.AdamW, state any) (string, error) {
	files, err := ModelFiles("", m, opt)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	sf, err := StateFile(state)
	if err != nil {
		return "", err
	}
	id, err := sink.Save(ctx, step, append(files, sf))
	if err != nil {
		return "", fmt.Errorf("save checkpoint at step %d: %w", step, err)
	}
	return id, nil
}
