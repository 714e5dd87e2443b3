package modelstore

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/instructflow/instructflow/chat"
	"github.com/instructflow/instructflow/hf"
	"github.com/instructflow/instructflow/model"
	"github.com/instructflow/instructflow/runspec"
	"github.com/instructflow/instructflow/storage/postgres"
)

// cardInput is what a model card says.
type cardInput struct {
	Title   string
	Kind    hf.Kind
	Model   *model.Model
	Base    *postgres.Model // the imported model it is, or that its run started from
	Spec    *runspec.Spec   // of the run, for a stage's model
	Stage   postgres.Stage
	Metrics map[string]float64
	Lineage []postgres.Lineage
	Task    string
}

// modelCard writes the README.md of an export: what the model is, how to
// load it, and its lineage (run, spec, base model, label snapshot and its
// hash, the stage's metrics).
func modelCard(in cardInput) []byte {
	var b bytes.Buffer
	c := in.Model.Config
	what := "a causal language model (`GPT2LMHeadModel`)"
	if in.Kind == hf.Reward {
		what = "a reward model (`GPT2ForSequenceClassification`, `num_labels: 1`): the reward of a text is the score at its last token"
	}
	fmt.Fprintf(&b, "---\nlibrary_name: transformers\ntags: [instructflow, rlhf, gpt2]\n---\n\n# %s\n\n", in.Title)
	fmt.Fprintf(&b, "Exported by InstructFlow: %s, GPT-2 architecture, %d layers, %d heads, width %d, context %d, vocabulary %d, %d parameters, float32 weights in `model.safetensors` (LoRA adapters, if any, merged).\n\n",
		what, c.Layers, c.Heads, c.Width, c.Context, c.Vocab, c.ParamCount())
	if in.Kind == hf.Reward {
		b.WriteString("Hugging Face's score layer has no bias; the engine's reward head bias, a constant added to every reward (which no ranking depends on), is kept in `config.json` as `instructflow_score_bias`.\n\n")
	}
	if in.Base == nil && in.Task != "" {
		fmt.Fprintf(&b, "Its tokenizer is the built-in `%s` task's character tokenizer, which has no Hugging Face form: no tokenizer files are included.\n\n", in.Task)
	}
	if in.Spec != nil {
		writePromptFormat(&b, *in.Spec)
	}
	b.WriteString("## Lineage\n\n")
	if in.Spec != nil {
		fmt.Fprintf(&b, "- run: `%s`, stage `%s`, checkpoint `%s` (manifest SHA-256 `%s`)\n", in.Spec.ID, in.Stage.Name, in.Stage.CheckpointKey, in.Stage.CheckpointSHA)
	}
	if in.Base != nil {
		fmt.Fprintf(&b, "- base model: `%s` (%s, imported from `%s`, weights %v, manifest SHA-256 `%s`, tokenizer SHA-256 `%s`)\n",
			in.Base.Name, in.Base.Architecture, in.Base.Source, in.Base.DTypes, in.Base.ManifestSHA, in.Base.TokenizerSHA)
	} else if in.Spec != nil {
		fmt.Fprintf(&b, "- base model: none (trained from random weights, seed %d)\n", in.Spec.Seed)
	}
	for _, l := range in.Lineage {
		fmt.Fprintf(&b, "- label snapshot `%s` (%d comparisons, SHA-256 `%s`), used by stage `%s`\n", l.Snapshot, l.Comparisons, l.SHA256, l.Stage)
	}
	if len(in.Metrics) > 0 {
		b.WriteString("\n## Metrics of the stage\n\n| metric | value |\n| --- | --- |\n")
		for _, k := range slices.Sorted(maps.Keys(in.Metrics)) {
			fmt.Fprintf(&b, "| %s | %.6g |\n", k, in.Metrics[k])
		}
	}
	if in.Spec != nil {
		spec, _ := json.MarshalIndent(in.Spec, "", "  ")
		fmt.Fprintf(&b, "\n## Run spec\n\n```json\n%s\n```\n", spec)
	}
	return b.Bytes()
}

// writePromptFormat says how the run rendered text (data.template), so
// that the model is prompted as it was trained.
func writePromptFormat(b *bytes.Buffer, s runspec.Spec) {
	tmpl, err := s.Template()
	if err != nil {
		return
	}
	name := cmp.Or(s.Data.Template, "plain")
	how := "with the chat template `" + name + "` (data.template)."
	if _, builtin := chat.Builtin[name]; !builtin {
		how = "with this chat template (data.template, a Go text/template):\n\n```\n" + name + "\n```\n\n"
	}
	turns := []chat.Message{{Role: chat.User, Content: "What is RLHF?"}}
	text, stored := chat.Identity(turns)
	prompt, err := tmpl.Render(chat.Turns(text, stored), text)
	if err != nil {
		return
	}
	var example bytes.Buffer
	enc := json.NewEncoder(&example)
	enc.SetEscapeHTML(false) // chatml's <|im_start|> as written
	if err := enc.Encode(prompt + tmpl.Target("Reinforcement learning from human feedback.")); err != nil {
		return
	}
	fmt.Fprintf(b, "## Prompt format\n\nThe run rendered every conversation, in every stage, %s Prompt the model the same way. A one-turn conversation and its reply are the text (as a JSON string)\n\n```json\n%s```\n\n", how, example.Bytes())
	if s.Data.MaxPromptTokens > 0 || s.Data.MaxResponseTokens > 0 {
		fmt.Fprintf(b, "Prompts were cut from the left to %d tokens and replies at %d tokens (0: no cut).\n\n", s.Data.MaxPromptTokens, s.Data.MaxResponseTokens)
	}
}
