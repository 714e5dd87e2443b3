package modelstore

import (
	"strings"
	"testing"

	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/runspec"
)

// TestCardPromptFormat: a stage's card shows the run's chat template as
// the exact text of one turn and its reply, as JSON (chatml's markers
// unescaped), and the cuts.
func TestCardPromptFormat(t *testing.T) {
	s := runspec.Spec{ID: "r1"}
	s.Data.Template = "chatml"
	s.Data.MaxPromptTokens = 128
	m := &model.Model{Config: model.Config{Layers: 1, Heads: 1, Width: 8, Context: 16, Vocab: 10}}
	card := string(modelCard(cardInput{Title: "t", Model: m, Spec: &s}))
	for _, want := range []string{
		"## Prompt format", "`chatml`",
		`"<|im_start|>user\nWhat is RLHF?<|im_end|>\n<|im_start|>assistant\nReinforcement learning from human feedback.<|im_end|>"`,
		"cut from the left to 128 tokens",
	} {
		if !strings.Contains(card, want) {
			t.Errorf("card lacks %q:\n%s", want, card)
		}
	}
	s.Data.Template = "{{range .Messages}}<{{.Role}}> {{.Content}}\n{{end}}<assistant>"
	if card := string(modelCard(cardInput{Title: "t", Model: m, Spec: &s})); !strings.Contains(card, "```\n"+s.Data.Template+"\n```") ||
		!strings.Contains(card, `"<user> What is RLHF?\n<assistant>Reinforcement learning from human feedback."`) {
		t.Errorf("a user template's card:\n%s", card)
	}
	if strings.Contains(string(modelCard(cardInput{Title: "t", Model: m})), "## Prompt format") {
		t.Error("a card without a run spec has a prompt format")
	}
}
