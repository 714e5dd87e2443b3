package model

import (
	"bytes"
	"strings"
	"testing"
)

func TestParamCountMatchesModel(t *testing.T) {
	for _, cfg := range []Config{
		{Vocab: 11, Context: 7, Layers: 2, Heads: 2, Width: 8},
		{Vocab: 11, Context: 7, Layers: 3, Heads: 4, Width: 16, ValueHead: true},
		{Vocab: 11, Context: 7, Layers: 1, Heads: 2, Width: 8, LoRARank: 3, LoRAAlpha: 6},
	} {
		m, err := New(cfg, NewRNG(1))
		if err != nil {
			t.Fatal(err)
		}
		if total, _ := m.NumParams(); int64(total) != cfg.ParamCount() {
			t.Errorf("%+v: ParamCount %d, the model has %d", cfg, cfg.ParamCount(), total)
		}
	}
}

// A config.json that asks for more than the engine can hold is refused
// before New allocates anything.
func TestConfigBoundsBeforeAllocating(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  Config
		want string
	}{
		"huge vocab":     {Config{Vocab: 1 << 30, Context: 8, Layers: 1, Heads: 1, Width: 8}, "vocab_size"},
		"huge width":     {Config{Vocab: 8, Context: 8, Layers: 1, Heads: 1, Width: 1 << 20}, "n_embd"},
		"too many":       {Config{Vocab: 50257, Context: 1024, Layers: 200, Heads: 16, Width: 2048}, "parameters"},
		"overflow shape": {Config{Vocab: 1 << 22, Context: 1 << 17, Layers: 1 << 10, Heads: 1, Width: 1 << 16}, "parameters"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
			}
		})
	}
	gpt2 := Config{Vocab: 50257, Context: 1024, Layers: 12, Heads: 12, Width: 768}
	if err := gpt2.Validate(); err != nil || gpt2.ParamCount() != 124439808 {
		t.Errorf("GPT-2 124M: %v, %d parameters", err, gpt2.ParamCount())
	}
	big := append([]byte(`{"n_embd": 8, "pad": "`), bytes.Repeat([]byte("x"), 2<<20)...)
	if _, err := ParseConfig(append(big, `"}`...)); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("a 2 MB config.json: %v", err)
	}
}
