package bench

import (
	"context"
	"strings"
	"testing"
)

func TestRunBadInput(t *testing.T) {
	for _, tc := range []struct {
		preset  string
		threads int
		want    string
	}{{"huge", 1, `unknown preset "huge"`}, {"tiny", 0, "threads is 0"}} {
		if _, err := Run(context.Background(), tc.preset, tc.threads); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%q, %d): %v, want an error containing %q", tc.preset, tc.threads, err, tc.want)
		}
	}
}

func TestPresetsAreValid(t *testing.T) {
	for _, name := range PresetNames() {
		p := Presets[name]
		if err := p.Config.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if p.T > p.Config.Context || p.PromptLen+p.SampleLen > p.Config.Context {
			t.Errorf("%s: batch or samples exceed the context", name)
		}
	}
	// GPT-2 124M: 2*(12*12*768^2 + 50257*768) matmul FLOPs per token, about 0.25 GFLOP
	if f := flopsPerToken(Presets["gpt2"].Config, 0); f < 2.4e8 || f > 2.6e8 {
		t.Fatalf("gpt2 forward FLOPs per token %g", f)
	}
}
