package sampling

import (
	"testing"

	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/tasks"
)

func tinyModel(t *testing.T, seed uint64) *model.Model {
	t.Helper()
	tok := tasks.Tokenizer()
	m, err := model.New(model.Config{Vocab: tok.VocabSize(), Context: 32, Layers: 1, Heads: 2, Width: 16}, model.NewRNG(seed))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A policy judged against itself with the same seeds ties every sample
// and has no KL to itself; against another policy the judge sees every
// sample of both.
func TestEvaluate(t *testing.T) {
	tok := tasks.Tokenizer()
	prompts := []string{"reverse ab=", "upper cd="}
	m := tinyModel(t, 1)
	calls := 0
	judge := func(p, r string) (float64, error) { calls++; return float64(len(r)), nil }
	ev, err := Evaluate(m, m, tok, judge, prompts, 3, 8, 7)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Samples != 6 || ev.WinRate != 0.5 || ev.KL != 0 || ev.Gold != ev.RefGold || calls != 12 {
		t.Errorf("self-evaluation: %+v after %d judge calls; want 6 samples, win rate 0.5, KL 0, equal gold, 12 calls", ev, calls)
	}
	other, err := Evaluate(m, tinyModel(t, 2), tok, judge, prompts, 3, 8, 7)
	if err != nil || other.KL == 0 || other.Samples != 6 {
		t.Errorf("against another policy: %+v, %v; want a KL other than 0", other, err)
	}
}

// Responses keeps, per prompt, the distinct non-empty samples in the order
// sampled, at most k of them.
func TestResponses(t *testing.T) {
	tok := tasks.Tokenizer()
	prompts := []string{"reverse ab=", "upper cd=", "sort dcb="}
	got, err := Responses(tinyModel(t, 3), tok, prompts, 4, model.SampleConfig{MaxTokens: 6, Temperature: 1}, model.NewRNG(5))
	if err != nil || len(got) != len(prompts) {
		t.Fatalf("Responses: %d lists, %v", len(got), err)
	}
	total := 0
	for i, rs := range got {
		total += len(rs)
		seen := map[string]bool{}
		for _, r := range rs {
			if r == "" || seen[r] {
				t.Errorf("prompt %d: %q empty or repeated in %q", i, r, rs)
			}
			seen[r] = true
		}
		if len(rs) > 4 {
			t.Errorf("prompt %d: %d responses of k=4", i, len(rs))
		}
	}
	if total == 0 {
		t.Error("no response kept from 12 samples")
	}
}
