package stage

import (
	"bytes"
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
