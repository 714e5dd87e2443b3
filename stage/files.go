package stage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/instructflow/instructflow/errkind"
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
		return errkind.BadInputf("%s has model shape %+v, but this stage expects %+v; it belongs to another run or stage: use a fresh checkpoint location", what, got, want)
	}
	return nil
}

// CheckStage refuses a checkpoint written by another stage.
func CheckStage(got, want string) error {
	if got != want {
		return errkind.BadInputf("the latest checkpoint was written by stage %q, not %q: use a fresh checkpoint location", got, want)
	}
	return nil
}

// Begin gives a one-model trainer its model, optimizer and state. With a
// committed checkpoint in sink it resumes from it, refusing one written by
// another stage (state.json's "stage") or with a model shape other than want;
// without one it builds them with fresh and newOpt and leaves state as the
// caller set it. cp is the checkpoint resumed from (zero when none).
func Begin(ctx context.Context, sink Sink, name string, want model.Config,
	fresh func() (*model.Model, error), newOpt func(*model.Model) *model.AdamW, state any,
) (m *model.Model, opt *model.AdamW, cp Checkpoint, err error) {
	cp, ok, err := sink.Latest(ctx)
	if err != nil {
		return nil, nil, cp, fmt.Errorf("%s: find latest checkpoint: %w", name, err)
	}
	if !ok {
		if m, err = fresh(); err != nil {
			return nil, nil, cp, err
		}
		return m, newOpt(m), cp, nil
	}
	var header struct {
		Stage string `json:"stage"`
	}
	if err := ReadState(cp.Files, &header); err != nil {
		return nil, nil, cp, fmt.Errorf("%s: resume: %w", name, err)
	}
	if err := CheckStage(header.Stage, name); err != nil {
		return nil, nil, cp, err
	}
	if m, err = LoadModel(cp.Files, ""); err != nil {
		return nil, nil, cp, fmt.Errorf("%s: resume: %w", name, err)
	}
	if err := CheckShape(m.Config, want, name+": the latest checkpoint"); err != nil {
		return nil, nil, cp, err
	}
	opt = newOpt(m)
	if err := LoadOptimizer(cp.Files, "", opt); err != nil {
		return nil, nil, cp, fmt.Errorf("%s: resume: %w", name, err)
	}
	if err := ReadState(cp.Files, state); err != nil {
		return nil, nil, cp, fmt.Errorf("%s: resume: %w", name, err)
	}
	return m, opt, cp, nil
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
