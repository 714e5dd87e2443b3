package hf

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/instructflow/instructflow/errkind"
	"github.com/instructflow/instructflow/model"
)

// Kind is what an exported model is for Hugging Face.
type Kind int

const (
	// Policy is a GPT2LMHeadModel; a value head, if any, is dropped.
	Policy Kind = iota
	// Reward is a GPT2ForSequenceClassification with one label whose score
	// layer is the model's value head.
	Reward
)

// Export is a model to write as a Hugging Face folder.
type Export struct {
	Model *model.Model // LoRA adapters are merged on the way out
	Kind  Kind
	// TokenizerFiles are written as they are, by base name.
	TokenizerFiles map[string][]byte
	// EOT and Pad go into config.json and generation_config.json
	// (eos_token_id and bos_token_id are EOT, pad_token_id is Pad).
	EOT, Pad int32
	Card     []byte // README.md, written as given; none when nil
}

// gpt2Config is the config.json Write writes: a whole GPT2Config with
// Hugging Face's defaults, so every tool reads the same model.
type gpt2Config struct {
	ActivationFunction  string            `json:"activation_function"`
	Architectures       []string          `json:"architectures"`
	AttnPdrop           float64           `json:"attn_pdrop"`
	BosTokenID          int32             `json:"bos_token_id"`
	EmbdPdrop           float64           `json:"embd_pdrop"`
	EosTokenID          int32             `json:"eos_token_id"`
	ID2Label            map[string]string `json:"id2label,omitempty"`
	InitializerRange    float64           `json:"initializer_range"`
	ScoreBias           *float32          `json:"instructflow_score_bias,omitempty"`
	Label2ID            map[string]int    `json:"label2id,omitempty"`
	LayerNormEpsilon    float64           `json:"layer_norm_epsilon"`
	ModelType           string            `json:"model_type"`
	NCtx                int               `json:"n_ctx"`
	NEmbd               int               `json:"n_embd"`
	NHead               int               `json:"n_head"`
	NInner              *int              `json:"n_inner"`
	NLayer              int               `json:"n_layer"`
	NPositions          int               `json:"n_positions"`
	NumLabels           int               `json:"num_labels,omitempty"`
	PadTokenID          *int32            `json:"pad_token_id,omitempty"`
	ReorderAndUpcast    bool              `json:"reorder_and_upcast_attn"`
	ResidPdrop          float64           `json:"resid_pdrop"`
	ScaleAttnByLayer    bool              `json:"scale_attn_by_inverse_layer_idx"`
	ScaleAttnWeights    bool              `json:"scale_attn_weights"`
	SummaryActivation   *string           `json:"summary_activation"`
	SummaryFirstDropout float64           `json:"summary_first_dropout"`
	SummaryProjToLabels bool              `json:"summary_proj_to_labels"`
	SummaryType         string            `json:"summary_type"`
	SummaryUseProj      bool              `json:"summary_use_proj"`
	TieWordEmbeddings   bool              `json:"tie_word_embeddings"`
	TorchDType          string            `json:"torch_dtype"`
	UseCache            bool              `json:"use_cache"`
	VocabSize           int               `json:"vocab_size"`
}

// generationConfig returns generation_config.json: the one among the
// tokenizer's files, if any, with the token ids set to e's.
func (e Export) generationConfig() ([]byte, error) {
	c := map[string]any{}
	if b, ok := e.TokenizerFiles[genFile]; ok {
		if err := json.Unmarshal(b, &c); err != nil || c == nil {
			return nil, errkind.BadInputf("hf: export: %s among the tokenizer files is not a JSON object; fix it or leave it out", genFile)
		}
	}
	c["bos_token_id"], c["eos_token_id"], c["pad_token_id"] = e.EOT, e.EOT, e.Pad
	b, err := json.MarshalIndent(c, "", "  ") // keys sorted
	if err != nil {
		return nil, fmt.Errorf("hf: export: %s: %w", genFile, err)
	}
	return append(b, '\n'), nil
}

// Write writes e to dir, which must not exist or be empty: config.json,
// generation_config.json, model.safetensors (F32), the tokenizer's files and
// README.md. It writes into a temporary sibling folder and renames it, so a
// failure leaves nothing half-written.
func Write(ctx context.Context, dir string, e Export) (err error) {
	m, cfgJSON, err := e.prepare()
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return errkind.BadInputf("hf: export to %s: the folder is not empty; give a new or empty folder", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hf: export to %s: %w", dir, err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("hf: export to %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("hf: export to %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp's 0700 would hide the model from other users' tools
		return fmt.Errorf("hf: export to %s: %w", dir, err)
	}
	files := map[string][]byte{configFile: cfgJSON}
	for name, b := range e.TokenizerFiles {
		files[name] = b
	}
	if files[genFile], err = e.generationConfig(); err != nil {
		return err
	}
	if e.Card != nil {
		files[cardFile] = e.Card
	}
	for name, b := range files {
		if err := writeFile(filepath.Join(tmp, name), func(w *bufio.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return fmt.Errorf("hf: export to %s: %w", dir, err)
		}
	}
	if err := writeFile(filepath.Join(tmp, weightsFile), func(w *bufio.Writer) error { return writeHFWeights(ctx, w, m, e.Kind) }); err != nil {
		return fmt.Errorf("hf: export to %s: %w", dir, err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hf: export to %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("hf: export to %s: %w", dir, err)
	}
	return nil
}

// prepare checks e and returns the model to write (LoRA merged) and its
// config.json.
func (e Export) prepare() (*model.Model, []byte, error) {
	if e.Model == nil {
		return nil, nil, errkind.BadInputf("hf: export: no model given")
	}
	if e.Kind != Policy && e.Kind != Reward {
		return nil, nil, errkind.BadInputf("hf: export: kind %d is neither Policy nor Reward", e.Kind)
	}
	m := e.Model
	cfg := m.Config
	if e.Kind == Reward && !cfg.ValueHead {
		return nil, nil, errkind.BadInputf("hf: export: a reward model needs a value head, and this model has none; export it as a policy, or export a trained reward model")
	}
	for _, id := range []struct {
		name string
		v    int32
	}{{"EOT", e.EOT}, {"Pad", e.Pad}} {
		if id.v < 0 || int(id.v) >= cfg.Vocab {
			return nil, nil, errkind.BadInputf("hf: export: %s token id %d is outside the vocabulary [0, %d); give the tokenizer's id", id.name, id.v, cfg.Vocab)
		}
	}
	reserved := []string{configFile, weightsFile, indexFile, cardFile}
	for name := range e.TokenizerFiles {
		if name != filepath.Base(name) || name == "." || name == ".." || strings.ContainsRune(name, '\\') || slices.Contains(reserved, name) {
			return nil, nil, errkind.BadInputf("hf: export: tokenizer file name %q is not a plain file name of its own; give base names such as tokenizer.json", name)
		}
	}
	if cfg.LoRARank > 0 {
		m = m.MergeLoRA()
	}
	c := gpt2Config{
		ActivationFunction: "gelu_new", Architectures: []string{ArchLMHead}, AttnPdrop: 0.1,
		BosTokenID: e.EOT, EmbdPdrop: 0.1, EosTokenID: e.EOT, InitializerRange: 0.02, LayerNormEpsilon: 1e-5,
		ModelType: "gpt2", NCtx: cfg.Context, NEmbd: cfg.Width, NHead: cfg.Heads, NLayer: cfg.Layers,
		NPositions: cfg.Context, ResidPdrop: 0.1, ScaleAttnWeights: true, SummaryFirstDropout: 0.1,
		SummaryProjToLabels: true, SummaryType: "cls_index", SummaryUseProj: true, TieWordEmbeddings: true,
		TorchDType: "float32", UseCache: true, VocabSize: cfg.Vocab,
	}
	if e.Kind == Reward {
		bias := m.Tensor("v_head.summary.bias").Data[0]
		pad := e.Pad
		c.Architectures = []string{ArchScorer}
		c.ID2Label, c.Label2ID, c.NumLabels = map[string]string{"0": "LABEL_0"}, map[string]int{"LABEL_0": 0}, 1
		c.PadTokenID, c.ScoreBias = &pad, &bias
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, nil, fmt.Errorf("hf: export: %w", err)
	}
	return m, append(b, '\n'), nil
}

// writeFile creates path, fills it through a buffer and syncs it.
func writeFile(path string, fill func(w *bufio.Writer) error) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(fh, 1<<20)
	err = fill(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

// hfTensors are the tensors of m written for kind, with Hugging Face's
// names: the base model, and for Reward the value head's weight as
// score.weight (its bias goes into config.json).
func hfTensors(m *model.Model, kind Kind) (specs []model.TensorSpec, data [][]float32) {
	for _, t := range m.Tensors {
		name := t.Name
		switch {
		case t.Group == model.Base:
		case kind == Reward && name == "v_head.summary.weight":
			name = "score.weight"
		default:
			continue
		}
		specs = append(specs, model.TensorSpec{Name: name, Group: t.Group, Shape: t.Shape})
		data = append(data, t.Data)
	}
	return specs, data
}

// writeHFWeights streams m's tensors for kind as F32 safetensors: the header,
// then each tensor's bytes, a chunk at a time.
func writeHFWeights(ctx context.Context, w *bufio.Writer, m *model.Model, kind Kind) error {
	specs, data := hfTensors(m, kind)
	if _, err := w.Write(model.F32Header(specs)); err != nil {
		return err
	}
	const chunk = 1 << 14 // elements
	buf := make([]byte, 0, 4*chunk)
	for _, d := range data {
		if err := ctx.Err(); err != nil {
			return err
		}
		for len(d) > 0 {
			n := min(chunk, len(d))
			buf = buf[:0]
			for _, v := range d[:n] {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
			d = d[n:]
		}
	}
	return nil
}
