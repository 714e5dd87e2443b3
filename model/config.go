package model

import (
	"encoding/json"
	"fmt"
)

// Config is the shape of a model. Its JSON form is a Hugging Face GPT-2
// config.json (the engine's extras, a value head and LoRA adapters, are added
// fields that Hugging Face ignores).
type Config struct {
	Vocab   int `json:"vocab_size"`
	Context int `json:"n_positions"` // longest sequence the model accepts
	Layers  int `json:"n_layer"`
	Heads   int `json:"n_head"`
	Width   int `json:"n_embd"`

	// ValueHead adds a scalar head on the final hidden states: the reward
	// model reads it at the last token, a PPO value model at every token.
	ValueHead bool `json:"value_head,omitempty"`
	// LoRARank > 0 adds rank-r adapters to the attention and MLP projections.
	LoRARank int `json:"lora_rank,omitempty"`
	// LoRAAlpha scales the adapters by LoRAAlpha/LoRARank (0 means LoRARank).
	LoRAAlpha float32 `json:"lora_alpha,omitempty"`
}

// Validate reports the first field that makes c unusable.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.Vocab}, {"n_positions", c.Context}, {"n_layer", c.Layers}, {"n_head", c.Heads}, {"n_embd", c.Width}} {
		if f.v <= 0 {
			return fmt.Errorf("model: config: %s is %d, must be positive", f.name, f.v)
		}
	}
	// Bounds before anything is allocated: a damaged or hostile config.json
	// must not make New reserve more memory than the engine can use.
	for _, f := range []struct {
		name   string
		v, max int
	}{{"vocab_size", c.Vocab, 1 << 22}, {"n_positions", c.Context, 1 << 17}, {"n_layer", c.Layers, 1 << 10},
		{"n_head", c.Heads, 1 << 10}, {"n_embd", c.Width, 1 << 16}, {"lora_rank", c.LoRARank, 1 << 12}} {
		if f.v > f.max {
			return fmt.Errorf("model: config: %s is %d, more than this engine supports (%d)", f.name, f.v, f.max)
		}
	}
	if n := c.ParamCount(); n > MaxParams {
		return fmt.Errorf("model: config: %d parameters, more than this engine trains (%d); use an external trainer for models this large", n, int64(MaxParams))
	}
	if c.Width%c.Heads != 0 {
		return fmt.Errorf("model: config: n_embd %d is not divisible by n_head %d", c.Width, c.Heads)
	}
	if c.LoRARank < 0 {
		return fmt.Errorf("model: config: lora_rank is %d, must not be negative", c.LoRARank)
	}
	if c.LoRAAlpha < 0 {
		return fmt.Errorf("model: config: lora_alpha is %v, must not be negative", c.LoRAAlpha)
	}
	return nil
}

const maxConfigBytes = 1 << 20

// MaxParams is the most parameters a model of this engine may have.
// Training holds 16 bytes per parameter (float32 weights, gradients and two
// AdamW moments): 1e9 parameters are 16 GB before activations.
const MaxParams = 1_000_000_000

// ParamCount is the number of parameters a model of this shape has, computed
// without allocating it (in int64: it must not overflow for any shape that
// passes the per-field bounds of Validate).
func (c Config) ParamCount() int64 {
	V, T, L, C, r := int64(c.Vocab), int64(c.Context), int64(c.Layers), int64(c.Width), int64(c.LoRARank)
	perBlock := 4*C + (C*3*C + 3*C) + (C*C + C) + (C*4*C + 4*C) + (4*C*C + C) // 2 layer norms, qkv, proj, fc, fc proj
	if r > 0 {
		perBlock += r * ((C + 3*C) + (C + C) + (C + 4*C) + (4*C + C)) // A (r,C) and B (OC,r) per projection
	}
	n := V*C + T*C + L*perBlock + 2*C
	if c.ValueHead {
		n += C + 1
	}
	return n
}

func (c Config) loraScale() float32 {
	if c.LoRAAlpha == 0 {
		return 1
	}
	return c.LoRAAlpha / float32(c.LoRARank)
}

// hfConfig is config.json: Config plus the constant fields Hugging Face's
// GPT2Config needs to read it.
type hfConfig struct {
	ModelType         string   `json:"model_type"`
	Architectures     []string `json:"architectures"`
	Activation        string   `json:"activation_function"`
	LayerNormEpsilon  float64  `json:"layer_norm_epsilon"`
	TieWordEmbeddings bool     `json:"tie_word_embeddings"`
	NCtx              int      `json:"n_ctx"`
	Config
}

// MarshalConfig returns c as a Hugging Face GPT-2 config.json.
func MarshalConfig(c Config) ([]byte, error) {
	b, err := json.MarshalIndent(hfConfig{
		ModelType: "gpt2", Architectures: []string{"GPT2LMHeadModel"}, Activation: "gelu_new",
		LayerNormEpsilon: lnEps, TieWordEmbeddings: true, NCtx: c.Context, Config: c,
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("model: marshal config: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseConfig reads a config.json (ours or a Hugging Face GPT-2 one) and
// validates it.
func ParseConfig(data []byte) (Config, error) {
	if len(data) > maxConfigBytes {
		return Config{}, fmt.Errorf("model: parse config: %d bytes, more than a config.json holds (%d)", len(data), maxConfigBytes)
	}
	var h hfConfig
	if err := json.Unmarshal(data, &h); err != nil {
		return Config{}, fmt.Errorf("model: parse config: %w", err)
	}
	if h.ModelType != "" && h.ModelType != "gpt2" {
		return Config{}, fmt.Errorf("model: parse config: model_type %q, want gpt2", h.ModelType)
	}
	if h.Activation != "" && h.Activation != "gelu_new" && h.Activation != "gelu_pytorch_tanh" {
		return Config{}, fmt.Errorf("model: parse config: activation_function %q, want gelu_new", h.Activation)
	}
	if h.Context == 0 {
		h.Context = h.NCtx
	}
	if err := h.Config.Validate(); err != nil {
		return Config{}, err
	}
	return h.Config, nil
}
