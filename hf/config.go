package hf

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/instructflow/instructflow/model"
)

// The architectures Open reads, as Hugging Face names them in config.json.
const (
	ArchLMHead  = "GPT2LMHeadModel"
	ArchBase    = "GPT2Model"
	ArchScorer  = "GPT2ForSequenceClassification"
	configFile  = "config.json"
	genFile     = "generation_config.json"
	weightsFile = "model.safetensors"
	indexFile   = "model.safetensors.index.json"
	cardFile    = "README.md"
)

// scoreBiasKey is the config.json key that carries the engine's value-head
// bias, which Hugging Face's score layer does not have.
const scoreBiasKey = "instructflow_score_bias"

var supportedArchs = []string{ArchLMHead, ArchBase, ArchScorer}

const maxConfigBytes = 1 << 20

// hfConfig is the part of a Hugging Face GPT2Config that matters here.
// Pointers tell an absent key (Hugging Face's default applies) from a set one.
type hfConfig struct {
	ModelType     *string           `json:"model_type"`
	Architectures []string          `json:"architectures"`
	Vocab         *int              `json:"vocab_size"`
	NPositions    *int              `json:"n_positions"`
	NCtx          *int              `json:"n_ctx"`
	NEmbd         *int              `json:"n_embd"`
	NLayer        *int              `json:"n_layer"`
	NHead         *int              `json:"n_head"`
	NInner        *int              `json:"n_inner"`
	Activation    *string           `json:"activation_function"`
	LNEps         *float64          `json:"layer_norm_epsilon"`
	ScaleAttn     *bool             `json:"scale_attn_weights"`
	ScaleByLayer  *bool             `json:"scale_attn_by_inverse_layer_idx"`
	Reorder       *bool             `json:"reorder_and_upcast_attn"`
	Tie           *bool             `json:"tie_word_embeddings"`
	NumLabels     *int              `json:"num_labels"`
	ID2Label      map[string]string `json:"id2label"`
	ScoreBias     *float64          `json:"instructflow_score_bias"`
}

// parsedConfig is what Open takes from config.json.
type parsedConfig struct {
	arch      string // "" when config.json names none: the weights decide
	cfg       model.Config
	scoreBias float32
}

// parseConfig reads a Hugging Face GPT-2 config.json. It returns every
// problem found, each as "config.json: what is wrong; what to do"; the config
// is usable only when there are none. shaped says whether it is a GPT-2 of a
// shape the engine supports, to check the weights against even when other
// settings are wrong.
func parseConfig(data []byte) (p parsedConfig, probs []string, shaped bool) {
	bad := func(format string, args ...any) { probs = append(probs, configFile+": "+fmt.Sprintf(format, args...)) }
	if len(data) > maxConfigBytes {
		bad("%d bytes, more than a config.json holds (%d); use the config.json saved with the model", len(data), maxConfigBytes)
		return parsedConfig{}, probs, false
	}
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		bad("not valid JSON (%v); fix it or save the config again with save_pretrained", err)
		return parsedConfig{}, probs, false
	}
	supported := "supported: " + strings.Join(supportedArchs, ", ") + " (model_type gpt2)"
	if h.ModelType != nil && *h.ModelType != "gpt2" {
		bad("model_type is %q, not a GPT-2 model; %s", *h.ModelType, supported)
	}
	if h.ModelType == nil && len(h.Architectures) == 0 {
		bad("neither model_type nor architectures is set; set model_type to \"gpt2\" (%s)", supported)
	}
	for _, a := range h.Architectures {
		if !slices.Contains(supportedArchs, a) {
			bad("architecture %s is not supported; %s", a, supported)
		}
	}
	if len(h.Architectures) > 0 {
		p.arch = h.Architectures[0]
	}
	gpt2 := len(probs) == 0
	if a := h.Activation; a != nil && *a != "gelu_new" && *a != "gelu_pytorch_tanh" {
		if *a == "gelu" {
			bad("activation_function is \"gelu\", the exact (erf) GELU, whose outputs differ from the tanh GELU this engine computes; supported: gelu_new, gelu_pytorch_tanh")
		} else {
			bad("activation_function is %q; supported: gelu_new, gelu_pytorch_tanh (the tanh GELU)", *a)
		}
	}
	if e := h.LNEps; e != nil && *e != 1e-5 {
		bad("layer_norm_epsilon is %g; this engine computes layer norm with 1e-5 only", *e)
	}
	if h.ScaleAttn != nil && !*h.ScaleAttn {
		bad("scale_attn_weights is false; this engine always scales attention by 1/sqrt(head size): use a model with scale_attn_weights true")
	}
	if h.ScaleByLayer != nil && *h.ScaleByLayer {
		bad("scale_attn_by_inverse_layer_idx is true; this engine does not scale attention by layer: use a model with it false")
	}
	if h.Reorder != nil && *h.Reorder {
		bad("reorder_and_upcast_attn is true; this engine does not support it: use a model with it false")
	}
	if h.Tie != nil && !*h.Tie {
		bad("tie_word_embeddings is false; this engine ties the LM head to the token embedding (transformer.wte.weight): use a model with tied embeddings")
	}

	// Hugging Face's GPT2Config defaults for absent shape keys.
	get := func(v *int, def int) int {
		if v == nil {
			return def
		}
		return *v
	}
	p.cfg = model.Config{Vocab: get(h.Vocab, 50257), Context: get(h.NPositions, get(h.NCtx, 1024)),
		Layers: get(h.NLayer, 12), Heads: get(h.NHead, 12), Width: get(h.NEmbd, 768)}
	if h.NInner != nil && *h.NInner != 4*p.cfg.Width {
		bad("n_inner is %d; this engine's MLP is 4*n_embd (%d) wide: use a model with n_inner null or %d", *h.NInner, 4*p.cfg.Width, 4*p.cfg.Width)
	}
	if p.arch == ArchScorer {
		p.cfg.ValueHead = true
		n := 2 // Hugging Face's default
		if h.ID2Label != nil {
			n = len(h.ID2Label)
		} else if h.NumLabels != nil {
			n = *h.NumLabels
		}
		if n != 1 {
			bad("%s has %d labels; a reward model has one score: use num_labels 1 (id2label {\"0\": \"LABEL_0\"})", ArchScorer, n)
		}
	}
	if b := h.ScoreBias; b != nil {
		p.scoreBias = float32(*b)
		if math.IsInf(float64(p.scoreBias), 0) {
			bad("%s is %g, beyond float32; set it to a finite value or remove it", scoreBiasKey, *b)
		}
	}
	err := p.cfg.Validate()
	if err != nil {
		bad("%s; use a model whose shape the engine supports", strings.TrimPrefix(err.Error(), "model: config: "))
	}
	return p, probs, gpt2 && err == nil
}
